// GGUF files (ggml's model format, versions 2 and 3), as written by llama.cpp's gguf-py, city96's ComfyUI-GGUF
// tools and stable-diffusion.cpp: "GGUF", u32 version, u64 n_tensors, u64 n_kv, the KV pairs (typed values),
// the tensor infos (name, n_dims, ne[n_dims] innermost first, ggml type id, offset), padding up to
// general.alignment (default 32), then the data section the offsets point into.
// The reader maps the file and returns zero-copy views; every count, length, offset and extent is checked
// against the bytes that are there, and any problem is an Error naming the file, the KV key or the tensor.
// Format: ggml's docs/gguf.md; layouts of the block types: ../shared/golden/gguf/README.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/mapped_file.h"
#include "tensor/tensor.h"

namespace flux {

// The KV value types, by their GGUF ids.
enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
const char* gguf_type_name(GgufType type);  // "u32", "string", "array", ...

struct GgufValue;
// An array's elements all have `type` (arrays of arrays may differ in their own element types).
struct GgufArray {
  GgufType type = GgufType::u8;
  std::vector<GgufValue> items;
  bool operator==(const GgufArray& other) const;
};

struct GgufValue {
  std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string, GgufArray, uint64_t,
               int64_t, double>
      value;

  GgufType type() const { return static_cast<GgufType>(value.index()); }
  // Integer types (bool excluded) as int64 / uint64 when the value fits; floats as double.
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;  // f32, f64 and the integer types
  const std::string* as_string() const;
  const GgufArray* as_array() const;
  // Strings as they are, numbers exactly (floats round-trip), bools "true"/"false", arrays summarised:
  // "[u32 x 3: 1, 2, 3]", at most `max_items` elements shown, then "...".
  std::string str(size_t max_items = 8) const;
  bool operator==(const GgufValue& other) const;  // same type and value (floats compared as floats)
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;    // the ggml type id stored in the file
  DType dtype = DType::f32;  // its fluxcpp dtype
  std::vector<uint64_t> ne;  // as stored: ne[0] is the innermost (contiguous) dim
  Shape shape;               // torch order: ne reversed
  uint64_t rel_offset = 0;   // as stored, relative to the data section
  size_t offset = 0;         // absolute byte offset in the file
  size_t nbytes = 0;
};

class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;

  // Maps and validates `path`. Throws Error on any malformed header.
  static GgufFile open(const std::string& path);
  // Validates an in-memory image (the fuzzer's entry point); `name` is used in messages.
  static GgufFile parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }    // start of the data section in the file
  const std::vector<GgufKV>& kv() const { return kv_; }  // in file order
  const GgufValue* find_kv(const std::string& key) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // in file order
  const GgufTensorInfo* find(const std::string& name) const;
  // Zero-copy view of one tensor (keeps the mapping alive). Throws Error if absent.
  Tensor tensor(const std::string& name) const;
  Tensor tensor(const GgufTensorInfo& info) const;
  size_t data_bytes() const;  // sum of all tensors' bytes

 private:
  std::string path_;
  std::shared_ptr<const void> owner_;
  const uint8_t* base_ = nullptr;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  size_t data_offset_ = 0;
  std::vector<GgufKV> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// True if the file starts with the GGUF magic (false for a short or unreadable file).
bool is_gguf_file(const std::string& path);
// ggml's name of a type id ("Q4_K", "IQ4_NL", ...), or nullptr when the id is not one ggml has used.
const char* ggml_type_name(uint32_t ggml_type);
// The ggml type id of a dtype fluxcpp reads from GGUF (F32, F16, BF16, Q4_0 ... Q6_K); Error for any other.
uint32_t ggml_type_of(DType dtype);

}  // namespace flux
