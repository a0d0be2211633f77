// WeightStore: name -> (file, entry) over one or more mapped safetensors or GGUF files. Binding problems are
// collected and reported together by finish().
#include "io/weight_store.h"

#include <filesystem>

#include "base/error.h"

namespace flux {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

WeightStore WeightStore::open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string index_path;
  if (fs::is_directory(path, ec))
    index_path = find_safetensors_index(path);
  else if (ends_with(path, ".json"))
    index_path = path;

  WeightStore store;
  if (index_path.empty()) {
    for (const std::string& file : resolve_safetensors_files(path)) store.add_file(file);
    return store;
  }
  const SafetensorsIndex index = read_safetensors_index(index_path);
  for (const std::string& file : index.files) store.add_file(file);
  // The index is a promise about the shards: hold it to that.
  for (const auto& [name, shard] : index.weight_map) {
    auto it = store.tensors_.find(name);
    FLUX_CHECK(it != store.tensors_.end(), index_path, ": weight_map puts tensor '", name, "' in ", shard,
               ", which has no such tensor");
    const std::string& actual = store.files_[it->second.file].path();
    FLUX_CHECK(actual == shard, index_path, ": weight_map puts tensor '", name, "' in ", shard, ", found in ", actual);
  }
  return store;
}

void WeightStore::add_file(const std::string& path) {
  File file;
  std::vector<std::pair<std::string, Ref>> refs;
  const size_t id = files_.size();
  if (is_gguf_file(path)) {
    file.gguf = std::make_unique<GgufFile>(GgufFile::open(path));
    for (const GgufTensorInfo& t : file.gguf->tensors()) refs.emplace_back(t.name, Ref{id, nullptr, &t});
  } else {
    file.st = std::make_unique<SafetensorsFile>(SafetensorsFile::open(path));
    for (const SafetensorsEntry& e : file.st->entries()) refs.emplace_back(e.name, Ref{id, &e, nullptr});
  }
  for (const auto& [name, ref] : refs)  // all checked before any is added: a failed add leaves the store as it was
    FLUX_CHECK(tensors_.count(name) == 0, path, ": tensor '", name, "' is also in ", source_of(name));
  for (const auto& [name, ref] : refs) tensors_[name] = ref;
  // The first file's value wins.
  if (file.gguf)
    for (const GgufKV& kv : file.gguf->kv()) metadata_.emplace(kv.key, kv.value.str());
  else
    for (const auto& [k, v] : file.st->metadata()) metadata_.emplace(k, v);
  files_.push_back(std::move(file));
}

void WeightStore::strip_prefix(const std::string& prefix) {
  std::map<std::string, Ref> renamed;
  for (const auto& [name, ref] : tensors_) {
    const bool has = name.compare(0, prefix.size(), prefix) == 0;
    const std::string key = has ? name.substr(prefix.size()) : name;
    FLUX_CHECK(renamed.emplace(key, ref).second, files_[ref.file].path(), ": stripping '", prefix, "' from '", name,
               "' gives '", key, "', which another tensor already has");
  }
  tensors_ = std::move(renamed);
}

void WeightStore::rename(const std::function<std::string(const std::string&)>& map) {
  std::map<std::string, Ref> renamed;
  std::map<std::string, std::string> original;  // new name -> old, for the message
  for (const auto& [name, ref] : tensors_) {
    const std::string key = map(name);
    auto [it, added] = original.emplace(key, name);
    FLUX_CHECK(added, files_[ref.file].path(), ": renaming '", name, "' and '", it->second, "' both give '", key, "'");
    renamed.emplace(key, ref);
  }
  tensors_ = std::move(renamed);
}

Tensor WeightStore::tensor_of(const Ref& ref) const {
  const File& f = files_[ref.file];
  return ref.st ? f.st->tensor(*ref.st) : f.gguf->tensor(*ref.gguf);
}

bool WeightStore::contains(const std::string& name) const { return tensors_.count(name) != 0; }

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, ref] : tensors_) out.push_back(name);
  return out;
}

Tensor WeightStore::get(const std::string& name) const {
  auto it = tensors_.find(name);
  FLUX_CHECK(it != tensors_.end(), "weights (", join(files(), ", "), "): no tensor '", name, "'");
  return tensor_of(it->second);
}

Tensor WeightStore::require(const std::string& name, const Shape& shape) {
  used_.insert(name);
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    if (absent_.insert(name).second) missing_.push_back(name);
    return {};
  }
  const Ref& ref = it->second;
  if (shape.ndim() > 0 && !(ref.shape() == shape)) {
    missing_.push_back(str_cat(name, ": expected shape ", shape.str(), ", got ", ref.shape().str()));
    return {};
  }
  if (!is_float(ref.dtype()) && !is_quantized(ref.dtype())) {
    missing_.push_back(str_cat(name, ": expected a float dtype, got ", dtype_name(ref.dtype())));
    return {};
  }
  return tensor_of(ref);
}

Tensor WeightStore::require_f32(const std::string& name, const Shape& shape) {
  Tensor t = require(name, shape);
  if (!t.defined()) return t;
  return t.to(DType::f32);
}

Tensor WeightStore::optional(const std::string& name, const Shape& shape) {
  if (!contains(name)) return {};
  return require(name, shape);
}

void WeightStore::ignore(const std::string& name) { used_.insert(name); }

std::vector<std::string> WeightStore::unused() const {
  std::vector<std::string> out;
  for (const auto& [name, ref] : tensors_)
    if (used_.count(name) == 0) out.push_back(name);
  return out;
}

void WeightStore::finish(const std::string& what, bool strict_unused) {
  std::vector<std::string> absent, wrong;
  for (const std::string& m : missing_) (absent_.count(m) ? absent : wrong).push_back(m);
  const std::vector<std::string> extra = strict_unused ? unused() : std::vector<std::string>{};
  if (absent.empty() && wrong.empty() && extra.empty()) return;
  std::vector<std::string> parts;
  if (!absent.empty()) parts.push_back(str_cat(absent.size(), " missing: ", join(absent, ", ")));
  if (!wrong.empty()) parts.push_back(str_cat(wrong.size(), " mismatched: ", join(wrong, "; ")));
  if (!extra.empty()) parts.push_back(str_cat(extra.size(), " unused: ", join(extra, ", ")));
  fail(what, ": ", join(parts, "; "));
}

std::string WeightStore::source_of(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? std::string() : files_[it->second.file].path();
}

std::vector<std::string> WeightStore::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f.path());
  return out;
}

size_t WeightStore::total_bytes() const {
  size_t n = 0;
  for (const auto& f : files_) n += f.data_bytes();
  return n;
}

}  // namespace flux
