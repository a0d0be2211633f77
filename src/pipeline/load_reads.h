// The disk reads of a load (pipeline.cc): the read pass of each component packed at load, with byte progress, and
// the read-ahead of the files a job reads per call.
#pragma once

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "io/weight_store.h"
#include "pipeline/pipeline.h"

namespace flux {

// Bytes of every file of a store.
uint64_t files_bytes(const WeightStore& store);

// Byte progress over the components. For a component that is packed at load, begin() reads every page of its
// files (the disk read of a real model) and reports bytes as they come in, so the packing that follows finds
// them in the page cache; for a component read per call the bytes are reported when it is bound, without a read
// pass of its own (read_ahead_files below warms those files where the plan keeps them).
class ByteProgress {
 public:
  ByteProgress(const LoadProgress& sink, uint64_t total) : sink_(sink), total_(total) {}
  void begin(const std::string& component, const WeightStore& store, bool read_pages);
  void end(const std::string& component, const WeightStore& store);
  void report(const std::string& component);

 private:
  const LoadProgress& sink_;
  uint64_t total_ = 0, done_ = 0, start_ = 0;
};

// Reads `paths` ahead into the page cache, in order, on a thread of its own (base/mapped_file.h, read_ahead): the
// disk works while the caller computes. The thread stops at the next 2 MiB piece and is joined when the returned
// jthread is destroyed. No paths: no thread.
std::jthread read_ahead_files(std::vector<std::string> paths);

}  // namespace flux
