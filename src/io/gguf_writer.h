// GGUF v3 writer, in gguf-py's layout (GGUFWriter at llama.cpp c392e50, which ggml's gguf_write matches):
// "GGUF", version 3, n_tensors, n_kv, the KV pairs in the given order, the tensor infos in the given order
// (name, n_dims, ne innermost first = torch shape reversed, ggml type id, offset), zero padding up to the
// alignment, then each tensor's bytes followed by zero padding up to the alignment (after the last tensor
// too, as gguf-py does; ggml's gguf_write, used by stable-diffusion.cpp, leaves the last one unpadded).
// The header is written when the writer is made; tensor bytes are then streamed in declaration order, in
// as many pieces as the caller likes, so a 12 GB model never has to be in memory. The file is written to
// "<path>.part" and renamed to `path` by finish(), so a failed or abandoned write leaves no partial OUT.
// Reader and layouts: io/gguf.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "tensor/tensor.h"

namespace flux {

// Appends a KV value's bytes as GGUF stores them (strings length-prefixed; arrays: item type, count, items;
// bool as one byte). Throws Error naming `key` if an array holds an item of another type.
void append_gguf_value(std::string& out, const GgufValue& v, const std::string& key);

struct GgufTensorSpec {
  std::string name;
  DType dtype = DType::f32;  // F32, F16, BF16 or a ggml block type (ggml_type_of)
  Shape shape;               // torch order; stored as ne = shape reversed
};

struct GgufWriteOptions {
  uint32_t alignment = GgufFile::kDefaultAlignment;
  bool pad_last_tensor = true;  // gguf-py: true; ggml (sd-cli -M convert): false
};

class GgufWriter {
 public:
  // Writes the header. The alignment is a "general.alignment" KV (u32) when `kv` has one, else the option's,
  // in which case a "general.alignment" KV is appended unless it is GGUF's default 32 (as gguf-py does).
  // Throws Error naming `path` if it cannot be created, or naming a tensor whose shape is not whole blocks.
  GgufWriter(const std::string& path, std::vector<GgufKV> kv, std::vector<GgufTensorSpec> tensors,
             GgufWriteOptions options = {});
  ~GgufWriter();  // removes the partial file unless finish() succeeded
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Appends `n` bytes of the current tensor (tensors in declaration order; a tensor may come in pieces).
  // Throws Error if the bytes overrun the current tensor or all tensors were written.
  void write(const void* data, size_t n);
  // Checks every tensor was written in full, flushes, closes and renames into place. Throws Error naming the
  // path on any I/O failure.
  void finish();

  const std::vector<GgufTensorSpec>& tensors() const { return tensors_; }
  size_t current() const { return current_; }  // index of the tensor being written
  size_t tensor_bytes(size_t i) const { return sizes_[i]; }

 private:
  void put(const void* data, size_t n);
  void pad(uint64_t written);

  std::string path_, part_path_;
  std::FILE* file_ = nullptr;
  uint32_t alignment_ = GgufFile::kDefaultAlignment;
  bool pad_last_ = true;
  std::vector<GgufTensorSpec> tensors_;
  std::vector<size_t> sizes_;
  size_t current_ = 0;
  size_t current_written_ = 0;
  bool finished_ = false;
};

// The whole file at once: tensors (name, data) in the given order, each stored in its own dtype.
void write_gguf(const std::string& path, std::vector<GgufKV> kv,
                const std::vector<std::pair<std::string, Tensor>>& tensors, GgufWriteOptions options = {});

}  // namespace flux
