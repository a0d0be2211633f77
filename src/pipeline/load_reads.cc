#include "pipeline/load_reads.h"

#include <algorithm>
#include <filesystem>

#include "base/log.h"
#include "base/mapped_file.h"

namespace flux {

uint64_t files_bytes(const WeightStore& store) {
  uint64_t n = 0;
  for (const auto& f : store.files()) n += std::filesystem::file_size(f);
  return n;
}

void ByteProgress::begin(const std::string& component, const WeightStore& store, bool read_pages) {
  start_ = done_;
  report(component);
  if (!read_pages) return;
  for (const std::string& path : store.files()) {
    const auto file = MappedFile::open(path);
    constexpr size_t kChunk = size_t{64} << 20;
    const uint8_t* data = file->data();
    for (size_t off = 0; off < file->size(); off += kChunk) {
      const size_t n = std::min(kChunk, file->size() - off);
      file->prefetch(off, n);
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < n; i += 4096) sink = sink + data[off + i];
      done_ += n;
      report(component);
    }
  }
}

void ByteProgress::end(const std::string& component, const WeightStore& store) {
  done_ = start_ + files_bytes(store);
  report(component);
}

void ByteProgress::report(const std::string& component) {
  if (sink_) sink_(component, std::min(done_, total_), total_);
}

std::jthread read_ahead_files(std::vector<std::string> paths) {
  if (paths.empty()) return {};
  log_debug("reading ahead ", paths.size(), " file(s) read per call");
  return std::jthread([paths = std::move(paths)](std::stop_token stop) {
    for (const std::string& f : paths) read_ahead(f, stop);
  });
}

}  // namespace flux
