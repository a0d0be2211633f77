// safetensors files: an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the tensor bytes.
// The reader maps the file and returns zero-copy views; every header field is validated against the file
// (offsets in range, non-overlapping, byte size = numel * dtype size, known dtype, unique names), and any
// problem is an Error naming the file and the tensor.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/mapped_file.h"
#include "tensor/tensor.h"

namespace flux {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  size_t offset = 0;  // absolute byte offset in the file
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws Error on any malformed header.
  static SafetensorsFile open(const std::string& path);
  // Validates an in-memory image (the fuzzer's entry point); `name` is used in messages.
  static SafetensorsFile parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                               const std::string& name);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;
  // Zero-copy view of one tensor (keeps the mapping alive). Throws Error if absent.
  Tensor tensor(const std::string& name) const;
  Tensor tensor(const SafetensorsEntry& entry) const;
  size_t data_bytes() const;  // sum of all tensors' bytes
  const MappedFile* mapping() const { return file_.get(); }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::shared_ptr<const void> owner_;
  const uint8_t* base_ = nullptr;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Maps a safetensors dtype string ("F32", "BF16", "F8_E4M3", ...) to DType; throws Error naming it.
DType parse_safetensors_dtype(const std::string& s);
const char* safetensors_dtype_name(DType dtype);

// Writes tensors (in the given order) and optional metadata. Throws Error naming the path on I/O failure.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The files of a model given as one .safetensors file, a sharded "*.safetensors.index.json" (its
// weight_map's files, relative to the index), or a folder (every *.safetensors in it, or its index).
std::vector<std::string> resolve_safetensors_files(const std::string& path);

// A sharded set's "*.safetensors.index.json": {"metadata": ..., "weight_map": {tensor: shard file}}.
struct SafetensorsIndex {
  std::string path;
  std::map<std::string, std::string> weight_map;  // tensor name -> shard path (resolved against the index's folder)
  std::vector<std::string> files;                 // the distinct shard paths, sorted
};
// Reads and checks an index (valid JSON, every shard exists). Throws Error naming the index.
SafetensorsIndex read_safetensors_index(const std::string& path);
// The one "*.safetensors.index.json" in `folder`, or "" if none (Error if several).
std::string find_safetensors_index(const std::string& folder);

}  // namespace flux
