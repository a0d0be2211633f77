// GGUF reader. Format: ggml docs/gguf.md (little-endian; v2 and v3 use u64 counts and lengths, v1 used u32).
// The header is untrusted: every count and length is bounded by the bytes left before anything is allocated,
// and every tensor extent is checked against the data section before a view is made.
#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <fstream>

#include "base/error.h"

namespace flux {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

constexpr int kMaxArrayDepth = 8;                      // real files nest none; a bound keeps the recursion shallow
constexpr size_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, a one-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims = 0, type, offset

// ggml's type ids (ggml.h enum ggml_type); the ones that were removed keep their old names for messages.
constexpr const char* kGgmlTypeNames[] = {
    "F32",    "F16",      "Q4_0",     "Q4_1",     "Q4_2",  "Q4_3",  "Q5_0",       "Q5_1",       "Q8_0",       "Q8_1",
    "Q2_K",   "Q3_K",     "Q4_K",     "Q5_K",     "Q6_K",  "Q8_K",  "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",    "IQ1_S",
    "IQ4_NL", "IQ3_S",    "IQ2_S",    "IQ4_XS",   "I8",    "I16",   "I32",        "I64",        "F64",        "IQ1_M",
    "BF16",   "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
};

struct TypeMap {
  uint32_t id;
  DType dtype;
};
constexpr TypeMap kSupported[] = {
    {0, DType::f32},   {1, DType::f16},   {30, DType::bf16}, {2, DType::q4_0},  {3, DType::q4_1},
    {6, DType::q5_0},  {7, DType::q5_1},  {8, DType::q8_0},  {10, DType::q2_K}, {11, DType::q3_K},
    {12, DType::q4_K}, {13, DType::q5_K}, {14, DType::q6_K},
};

// A file string as shown in messages: control characters escaped (errors stay on one line), long ones cut.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 200; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += c < 32 || c == 127 ? str_cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15])
                              : std::string(1, static_cast<char>(c));
  }
  return s.size() > 200 ? out + "..." : out;
}

std::string type_label(uint32_t id) {
  const char* name = ggml_type_name(id);
  return name ? str_cat(name, " (", id, ")") : str_cat("unknown type id ", id);
}

// The fewest bytes one value of `type` takes in the file (arrays: element type + length).
size_t min_value_bytes(GgufType type) {
  switch (type) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::string:
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
      return 8;
    case GgufType::array:
      return 12;
  }
  return 1;
}

// A bounds-checked cursor over the header. `where` names the KV pair or tensor being read.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  void need(size_t n, const std::string& where, const char* field) const {
    if (n > left())
      fail(where, ": ", field, ": file truncated (needs ", n, " bytes at offset ", pos_, ", the file has ", left(),
           " left)");
  }
  template <typename T>
  T read(const std::string& where, const char* field) {
    need(sizeof(T), where, field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& where, const char* field) {
    const auto n = read<uint64_t>(where, field);
    if (n > left())
      fail(where, ": ", field, ": string length ", n, " is beyond the end of the file (", left(), " bytes left)");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

GgufType check_type(uint32_t id, const std::string& where, const char* field) {
  FLUX_CHECK(id <= static_cast<uint32_t>(GgufType::f64), where, ": ", field, " ", id,
             " is not a GGUF value type (expected 0..12)");
  return static_cast<GgufType>(id);
}

GgufValue read_value(Reader& r, GgufType type, const std::string& where, int depth) {
  switch (type) {
    case GgufType::u8:
      return {r.read<uint8_t>(where, "u8 value")};
    case GgufType::i8:
      return {r.read<int8_t>(where, "i8 value")};
    case GgufType::u16:
      return {r.read<uint16_t>(where, "u16 value")};
    case GgufType::i16:
      return {r.read<int16_t>(where, "i16 value")};
    case GgufType::u32:
      return {r.read<uint32_t>(where, "u32 value")};
    case GgufType::i32:
      return {r.read<int32_t>(where, "i32 value")};
    case GgufType::f32:
      return {r.read<float>(where, "f32 value")};
    case GgufType::boolean: {
      const auto b = r.read<uint8_t>(where, "bool value");
      FLUX_CHECK(b <= 1, where, ": bool value: expected 0 or 1, got ", static_cast<int>(b));
      return {b != 0};
    }
    case GgufType::string:
      return {r.read_string(where, "string value")};
    case GgufType::u64:
      return {r.read<uint64_t>(where, "u64 value")};
    case GgufType::i64:
      return {r.read<int64_t>(where, "i64 value")};
    case GgufType::f64:
      return {r.read<double>(where, "f64 value")};
    case GgufType::array:
      break;
  }
  FLUX_CHECK(depth < kMaxArrayDepth, where, ": arrays nested deeper than ", kMaxArrayDepth, " levels");
  GgufArray a;
  a.type = check_type(r.read<uint32_t>(where, "array element type"), where, "array element type");
  const auto n = r.read<uint64_t>(where, "array length");
  const size_t min_bytes = min_value_bytes(a.type);
  FLUX_CHECK(n <= r.left() / min_bytes, where, ": array length ", n, " of ", gguf_type_name(a.type), " needs at least ",
             min_bytes, " bytes each, but the file has ", r.left(), " bytes left");
  a.items.reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(r, a.type, where, depth + 1));
  return {std::move(a)};
}

void read_tensor_info(Reader& r, GgufTensorInfo& t, const std::string& file, uint64_t alignment) {
  const std::string where = str_cat(file, ": tensor '", printable(t.name), "'");
  const auto n_dims = r.read<uint32_t>(where, "n_dims");
  FLUX_CHECK(n_dims <= static_cast<uint32_t>(Shape::kMaxDims), where, ": n_dims: expected at most ", Shape::kMaxDims,
             ", got ", n_dims);
  int64_t numel = 1;
  std::vector<int64_t> dims(n_dims);
  for (uint32_t i = 0; i < n_dims; ++i) {
    const auto ne = r.read<uint64_t>(where, "ne");
    t.ne.push_back(ne);
    FLUX_CHECK(ne <= static_cast<uint64_t>(INT64_MAX), where, ": ne[", i, "] = ", ne, " is too large");
    FLUX_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(ne), &numel), where, ": ne ",
               Shape(std::span<const int64_t>(dims.data(), i)).str(), " x ", ne, ": element count overflows");
    dims[n_dims - 1 - i] = static_cast<int64_t>(ne);  // torch order: outermost first
  }
  t.shape = Shape(std::span<const int64_t>(dims));
  t.ggml_type = r.read<uint32_t>(where, "type");
  const TypeMap* m =
      std::find_if(std::begin(kSupported), std::end(kSupported), [&](const TypeMap& s) { return s.id == t.ggml_type; });
  FLUX_CHECK(m != std::end(kSupported), where, ": type ", type_label(t.ggml_type),
             " is not supported (fluxcpp reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, "
             "Q6_K)");
  t.dtype = m->dtype;
  t.rel_offset = r.read<uint64_t>(where, "offset");

  const int64_t block = dtype_block_size(t.dtype);
  if (block > 1) {
    FLUX_CHECK(n_dims >= 1 && static_cast<int64_t>(t.ne[0]) % block == 0, where,
               ": ne[0] = ", n_dims >= 1 ? t.ne[0] : 0, " is not a multiple of the ", ggml_type_name(t.ggml_type),
               " block size ", block);
  }
  uint64_t nbytes = 0;
  FLUX_CHECK(
      !__builtin_mul_overflow(static_cast<uint64_t>(numel / block), uint64_t{dtype_block_bytes(t.dtype)}, &nbytes),
      where, ": byte size of ", t.shape.str(), " overflows");
  t.nbytes = static_cast<size_t>(nbytes);
  FLUX_CHECK(t.rel_offset % alignment == 0, where, ": offset ", t.rel_offset, " is not a multiple of the alignment ",
             alignment);
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(type);
  return i < std::size(names) ? names[i] : "?";
}

const char* ggml_type_name(uint32_t ggml_type) {
  return ggml_type < std::size(kGgmlTypeNames) ? kGgmlTypeNames[ggml_type] : nullptr;
}

uint32_t ggml_type_of(DType dtype) {
  for (const TypeMap& m : kSupported)
    if (m.dtype == dtype) return m.id;
  fail("GGUF: dtype ", dtype_name(dtype), " has no GGUF type fluxcpp reads");
}

std::optional<int64_t> GgufValue::as_int() const {
  return std::visit(
      [](const auto& v) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, uint64_t>) {
          if (v > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
          return static_cast<int64_t>(v);
        } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<int64_t>(v);
        } else {
          return std::nullopt;
        }
      },
      value);
}

std::optional<double> GgufValue::as_float() const {
  if (const auto* f = std::get_if<float>(&value)) return *f;
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto i = as_int()) return static_cast<double>(*i);
  return std::nullopt;
}

bool GgufArray::operator==(const GgufArray& other) const { return type == other.type && items == other.items; }
bool GgufValue::operator==(const GgufValue& other) const { return value == other.value; }

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&value); }
const GgufArray* GgufValue::as_array() const { return std::get_if<GgufArray>(&value); }

std::string GgufValue::str(size_t max_items) const {
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_floating_point_v<T>) {
          char buf[64];
          const auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back the same
          return std::string(buf, res.ptr);
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          std::string s = str_cat("[", gguf_type_name(v.type), " x ", v.items.size());
          for (size_t i = 0; i < v.items.size() && i < max_items; ++i) {
            const GgufValue& item = v.items[i];
            s += i == 0 ? ": " : ", ";
            s += item.as_string() ? str_cat("\"", printable(*item.as_string()), "\"") : item.str(max_items);
          }
          return s + (v.items.size() > max_items ? ", ...]" : "]");
        } else {
          return std::to_string(v);
        }
      },
      value);
}

GgufFile GgufFile::open(const std::string& path) {
  std::shared_ptr<MappedFile> file = MappedFile::open(path);
  std::shared_ptr<const void> owner(file, file->data());
  return parse(owner, file->data(), file->size(), path);
}

GgufFile GgufFile::parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size, const std::string& name) {
  FLUX_CHECK(size >= 4 && std::memcmp(data, "GGUF", 4) == 0, name,
             ": not a GGUF file (expected the magic \"GGUF\", got \"",
             printable(std::string(reinterpret_cast<const char*>(data), std::min<size_t>(size, 4))), "\")");
  Reader r(data, size);
  r.read<uint32_t>(name, "magic");
  const std::string header = name + ": header";
  GgufFile g;
  g.path_ = name;
  g.owner_ = std::move(owner);
  g.base_ = data;
  g.version_ = r.read<uint32_t>(header, "version");
  FLUX_CHECK(g.version_ != 1, name,
             ": GGUF version 1 is not supported (it used 32-bit counts; expected version 2 or 3: re-convert the "
             "file with a current llama.cpp / gguf-py)");
  FLUX_CHECK(g.version_ < 0x10000 || (g.version_ & 0xffff) != 0, name, ": GGUF version ", g.version_,
             " looks byte-swapped (a big-endian file?); expected 2 or 3");
  FLUX_CHECK(g.version_ == 2 || g.version_ == 3, name, ": GGUF version ", g.version_,
             " is not supported (expected 2 or 3)");
  const auto n_tensors = r.read<uint64_t>(header, "n_tensors");
  const auto n_kv = r.read<uint64_t>(header, "n_kv");
  FLUX_CHECK(n_kv <= r.left() / kMinKvBytes, header, ": n_kv ", n_kv, " is more than the ", r.left(),
             " bytes left can hold (", kMinKvBytes, " bytes at least per KV pair)");
  FLUX_CHECK(n_tensors <= r.left() / kMinTensorInfoBytes, header, ": n_tensors ", n_tensors, " is more than the ",
             r.left(), " bytes left can hold (", kMinTensorInfoBytes, " bytes at least per tensor info)");

  g.kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    GgufKV kv;
    kv.key = r.read_string(str_cat(name, ": KV pair #", i), "key");
    const std::string where = str_cat(name, ": KV '", printable(kv.key), "'");
    FLUX_CHECK(g.kv_index_.emplace(kv.key, g.kv_.size()).second, where, ": duplicate key");
    const GgufType type = check_type(r.read<uint32_t>(where, "value type"), where, "value type");
    kv.value = read_value(r, type, where, 0);
    if (kv.key == "general.alignment") {
      const auto* a = std::get_if<uint32_t>(&kv.value.value);
      FLUX_CHECK(a != nullptr, where, ": expected type u32, got ", gguf_type_name(type));
      FLUX_CHECK(*a != 0 && (*a & (*a - 1)) == 0, where, ": expected a nonzero power of two, got ", *a);
      g.alignment_ = *a;
    }
    g.kv_.push_back(std::move(kv));
  }

  g.tensors_.resize(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo& t = g.tensors_[static_cast<size_t>(i)];
    t.name = r.read_string(str_cat(name, ": tensor info #", i), "name");
    FLUX_CHECK(g.index_.emplace(t.name, static_cast<size_t>(i)).second, name, ": tensor '", printable(t.name),
               "': duplicate name");
    read_tensor_info(r, t, name, g.alignment_);
  }

  // The data section starts at the end of the header rounded up to the alignment (padding may be missing when
  // the file holds no tensor data).
  const uint64_t start = (static_cast<uint64_t>(r.pos()) + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  g.data_offset_ = static_cast<size_t>(std::min<uint64_t>(start, size));
  const size_t data_size = size - g.data_offset_;
  std::vector<const GgufTensorInfo*> by_offset;
  for (GgufTensorInfo& t : g.tensors_) {
    FLUX_CHECK(t.rel_offset <= data_size && t.nbytes <= data_size - t.rel_offset, name, ": tensor '", printable(t.name),
               "': data at offset ", t.rel_offset, " + ", t.nbytes, " bytes is beyond the data section (", data_size,
               " bytes from file offset ", g.data_offset_, ")");
    t.offset = g.data_offset_ + static_cast<size_t>(t.rel_offset);
    if (t.nbytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& t = *by_offset[i];
    FLUX_CHECK(t.offset >= prev.offset + prev.nbytes, name, ": tensor '", printable(t.name), "' data [", t.rel_offset,
               ", ", t.rel_offset + t.nbytes, ") overlaps tensor '", printable(prev.name), "' [", prev.rel_offset, ", ",
               prev.rel_offset + prev.nbytes, ")");
  }
  return g;
}

const GgufValue* GgufFile::find_kv(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const GgufTensorInfo* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo* t = find(name);
  FLUX_CHECK(t != nullptr, path_, ": no tensor '", name, "'");
  return tensor(*t);
}

Tensor GgufFile::tensor(const GgufTensorInfo& info) const {
  const uint8_t* p = base_ + info.offset;
  Tensor t = Tensor::view(info.dtype, info.shape, p, owner_);
  // Mapped files are page-aligned and offsets multiples of the alignment; an in-memory image may not be: copy
  // tensors whose elements (quantized blocks: their f16 fields) would be misaligned.
  const size_t align = is_quantized(info.dtype) ? 2 : dtype_size(info.dtype);
  if (reinterpret_cast<uintptr_t>(p) % align != 0) return t.clone();
  return t;
}

size_t GgufFile::data_bytes() const {
  size_t n = 0;
  for (const auto& t : tensors_) n += t.nbytes;
  return n;
}

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace flux
