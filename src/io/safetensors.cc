// safetensors reader and writer. Format: https://github.com/huggingface/safetensors (README "Format"):
// u64 little-endian N, N bytes of UTF-8 JSON header, then the data section; data_offsets are relative to
// the start of the data section. The header is untrusted: every field is checked before a view is made.
#include "io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"

namespace flux {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit
constexpr int kMaxJsonDepth = 8;                  // a valid header nests 3 levels

// A header string as shown in messages: control characters escaped (errors stay on one line), long ones cut.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 200; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += c < 32 || c == 127 ? str_cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15])
                              : std::string(1, static_cast<char>(c));
  }
  return s.size() > 200 ? out + "..." : out;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses the header, rejecting duplicate keys (nlohmann keeps only one silently) and deep nesting.
json parse_json(const std::string& file, const char* what, const char* text, size_t size) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) fail(file, ": ", what, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          fail(file, ": ", what, ": duplicate key '", printable(parsed.get<std::string>()), "'");
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, text + size, callback);
  } catch (const json::exception& e) {
    fail(file, ": ", what, " is not valid JSON: ", e.what());
  }
}

// A non-negative JSON integer (shape dims, offsets).
uint64_t get_index(const std::string& where, const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) fail(where, ": expected a non-negative integer, got ", v.dump());
  fail(where, ": expected an integer, got ", v.dump());
}

SafetensorsEntry parse_entry(const std::string& file, const std::string& name, const json& info, uint64_t data_size) {
  const std::string where = str_cat(file, ": tensor '", printable(name), "'");
  FLUX_CHECK(info.is_object(), where, ": expected an object {dtype, shape, data_offsets}, got ", info.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    FLUX_CHECK(info.contains(field), where, ": missing field '", field, "'");

  SafetensorsEntry entry;
  entry.name = name;
  const json& dtype = info["dtype"];
  FLUX_CHECK(dtype.is_string(), where, ": dtype: expected a string, got ", dtype.dump());
  try {
    entry.dtype = parse_safetensors_dtype(dtype.get<std::string>());
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }

  const json& shape = info["shape"];
  FLUX_CHECK(shape.is_array(), where, ": shape: expected an array, got ", shape.dump());
  FLUX_CHECK(shape.size() <= static_cast<size_t>(Shape::kMaxDims), where, ": shape ", shape.dump(), " has ",
             shape.size(), " dims; fluxcpp supports tensors of at most ", Shape::kMaxDims, " dims");
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (const json& d : shape) {
    const uint64_t n = get_index(where + ": shape " + shape.dump(), d);
    FLUX_CHECK(n <= (uint64_t{1} << 62), where, ": shape ", shape.dump(), ": dim ", n, " is too large");
    FLUX_CHECK(!__builtin_mul_overflow(numel, n, &numel), where, ": shape ", shape.dump(), ": element count overflows");
    dims.push_back(static_cast<int64_t>(n));
  }
  entry.shape = Shape(std::span<const int64_t>(dims));
  uint64_t expect_bytes = 0;
  FLUX_CHECK(!__builtin_mul_overflow(numel, uint64_t{dtype_size(entry.dtype)}, &expect_bytes), where, ": shape ",
             shape.dump(), ": byte size overflows");

  const json& offsets = info["data_offsets"];
  FLUX_CHECK(offsets.is_array() && offsets.size() == 2, where, ": data_offsets: expected [begin, end], got ",
             offsets.dump());
  const uint64_t begin = get_index(where + ": data_offsets", offsets[0]);
  const uint64_t end = get_index(where + ": data_offsets", offsets[1]);
  FLUX_CHECK(begin <= end, where, ": data_offsets ", offsets.dump(), ": expected begin <= end");
  FLUX_CHECK(end <= data_size, where, ": data_offsets ", offsets.dump(), ": end ", end, " is beyond the data section (",
             data_size, " bytes)");
  FLUX_CHECK(end - begin == expect_bytes, where, ": data_offsets ", offsets.dump(), " span ", end - begin,
             " bytes; expected ", expect_bytes, " for ", dtype.get<std::string>(), " ", entry.shape.str());
  entry.nbytes = end - begin;
  entry.offset = begin;  // made absolute by the caller
  return entry;
}

}  // namespace

DType parse_safetensors_dtype(const std::string& s) {
  static const std::pair<const char*, DType> table[] = {
      {"F64", DType::f64},         {"F32", DType::f32}, {"F16", DType::f16},      {"BF16", DType::bf16},
      {"F8_E4M3", DType::f8_e4m3}, {"I64", DType::i64}, {"I32", DType::i32},      {"I16", DType::i16},
      {"I8", DType::i8},           {"U8", DType::u8},   {"BOOL", DType::boolean},
  };
  for (const auto& [name, dtype] : table)
    if (s == name) return dtype;
  fail("dtype: unsupported '", printable(s),
       "' (expected one of F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL)");
}

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f64:
      return "F64";
    case DType::f32:
      return "F32";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::f8_e4m3:
      return "F8_E4M3";
    case DType::i64:
      return "I64";
    case DType::i32:
      return "I32";
    case DType::i16:
      return "I16";
    case DType::i8:
      return "I8";
    case DType::u8:
      return "U8";
    case DType::boolean:
      return "BOOL";
    default:  // the GGUF block types have no safetensors dtype
      break;
  }
  return "?";
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<MappedFile> file = MappedFile::open(path);
  std::shared_ptr<const void> owner(file, file->data());
  SafetensorsFile st = parse(owner, file->data(), file->size(), path);
  st.file_ = std::move(file);
  return st;
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                                       const std::string& name) {
  FLUX_CHECK(size >= 8, name, ": file is ", size, " bytes; a safetensors file needs at least the 8-byte header length");
  const uint64_t header_bytes = read_u64_le(data);
  FLUX_CHECK(header_bytes <= kMaxHeaderBytes, name, ": header length ", header_bytes, " exceeds the limit of ",
             kMaxHeaderBytes, " bytes (not a safetensors file?)");
  FLUX_CHECK(header_bytes <= size - 8, name, ": header length ", header_bytes, " is beyond the end of the file (",
             size - 8, " bytes after the length)");
  const json header = parse_json(name, "header", reinterpret_cast<const char*>(data + 8), header_bytes);
  FLUX_CHECK(header.is_object(), name, ": header: expected a JSON object, got ", header.type_name());

  SafetensorsFile st;
  st.path_ = name;
  st.owner_ = std::move(owner);
  st.base_ = data;
  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_size = size - data_start;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      FLUX_CHECK(value.is_object(), name, ": __metadata__: expected an object of strings, got ", value.type_name());
      for (const auto& [mk, mv] : value.items()) {
        FLUX_CHECK(mv.is_string(), name, ": __metadata__ '", printable(mk), "': expected a string, got ", mv.dump());
        st.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    st.entries_.push_back(parse_entry(name, key, value, data_size));
  }

  // File order; tensors may not share bytes (empty tensors occupy none).
  std::sort(st.entries_.begin(), st.entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  const SafetensorsEntry* last = nullptr;
  for (const SafetensorsEntry& e : st.entries_) {
    if (e.nbytes == 0) continue;
    FLUX_CHECK(last == nullptr || e.offset >= last->offset + last->nbytes, name, ": tensor '", printable(e.name),
               "' data [", e.offset, ", ", e.offset + e.nbytes, ") overlaps tensor '", printable(last->name), "' [",
               last->offset, ", ", last->offset + last->nbytes, ")");
    last = &e;
  }
  for (size_t i = 0; i < st.entries_.size(); ++i) {
    st.entries_[i].offset += data_start;
    st.index_[st.entries_[i].name] = i;
  }
  return st;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  FLUX_CHECK(e != nullptr, path_, ": no tensor '", name, "'");
  return tensor(*e);
}

Tensor SafetensorsFile::tensor(const SafetensorsEntry& entry) const {
  const uint8_t* p = base_ + entry.offset;
  Tensor t = Tensor::view(entry.dtype, entry.shape, p, owner_);
  // Headers of arbitrary length can leave data unaligned for its type: copy those (rare) tensors.
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(entry.dtype) != 0) return t.clone();
  return t;
}

size_t SafetensorsFile::data_bytes() const {
  size_t n = 0;
  for (const auto& e : entries_) n += e.nbytes;
  return n;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const auto& [name, t] : tensors) {
    FLUX_CHECK(name != "__metadata__", path, ": '__metadata__' cannot name a tensor");
    FLUX_CHECK(!header.contains(name), path, ": tensor '", name, "' given twice");
    FLUX_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    FLUX_CHECK(!is_quantized(t.dtype()), path, ": tensor '", name, "' is ", dtype_name(t.dtype()),
               ", which safetensors cannot store");
    header[name] = nullptr;  // keeps the given order in the header
  }
  // Data laid out by decreasing element size (as the reference writer does), so every tensor is aligned.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  size_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape().to_vector()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  FLUX_CHECK(f != nullptr, path, ": cannot create: ", std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    if (ok && t.nbytes() > 0) ok = std::fwrite(t.raw(), 1, t.nbytes(), f) == t.nbytes();
  }
  const int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": cannot write: ", std::strerror(ok ? errno : err));
  }
}

SafetensorsIndex read_safetensors_index(const std::string& path) {
  namespace fs = std::filesystem;
  std::shared_ptr<MappedFile> file = MappedFile::open(path);
  FLUX_CHECK(file->size() > 0, path, ": index file is empty");
  const json index = parse_json(path, "index", reinterpret_cast<const char*>(file->data()), file->size());
  FLUX_CHECK(index.is_object() && index.contains("weight_map"), path, ": expected a JSON object with 'weight_map'");
  const json& map = index["weight_map"];
  FLUX_CHECK(map.is_object(), path, ": weight_map: expected an object {tensor: file}, got ", map.type_name());
  SafetensorsIndex out;
  out.path = path;
  const fs::path dir = fs::path(path).parent_path();
  std::set<std::string> seen;
  for (const auto& [name, file_name] : map.items()) {
    FLUX_CHECK(file_name.is_string(), path, ": weight_map '", name, "': expected a file name, got ", file_name.dump());
    const std::string shard = (dir / file_name.get<std::string>()).string();
    out.weight_map[name] = shard;
    if (seen.insert(shard).second) out.files.push_back(shard);
  }
  std::sort(out.files.begin(), out.files.end());
  for (const std::string& shard : out.files)
    FLUX_CHECK(fs::is_regular_file(shard), path, ": weight_map names file ", shard, ", which does not exist");
  return out;
}

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string find_safetensors_index(const std::string& folder) {
  namespace fs = std::filesystem;
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(folder))
    if (e.is_regular_file() && ends_with(e.path().string(), ".safetensors.index.json"))
      found.push_back(e.path().string());
  std::sort(found.begin(), found.end());
  FLUX_CHECK(found.size() <= 1, folder, ": ", found.size(), " index files (expected at most one): ", found[0], ", ",
             found[1]);
  return found.empty() ? "" : found[0];
}

std::vector<std::string> resolve_safetensors_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string index = find_safetensors_index(path);
    if (!index.empty()) return read_safetensors_index(index).files;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && ends_with(e.path().string(), ".safetensors")) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    FLUX_CHECK(!files.empty(), path, ": folder holds no .safetensors file and no *.safetensors.index.json");
    return files;
  }
  FLUX_CHECK(fs::exists(path, ec), path, ": no such file or folder");
  if (ends_with(path, ".json")) return read_safetensors_index(path).files;
  return {path};
}

}  // namespace flux
