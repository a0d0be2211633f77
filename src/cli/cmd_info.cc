// `fluxcpp info PATH`: lists the tensors of a .safetensors or .gguf file, a sharded *.safetensors.index.json, or
// a folder (a diffusers model folder's component subfolders too): name, dtype, shape, bytes, then totals per
// file and overall, and the __metadata__ keys (GGUF: version, alignment and the KV pairs, arrays summarised).
// Every file is fully validated; a malformed one is an error.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/command.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/weight_store.h"

namespace flux::cli {
namespace {

namespace fs = std::filesystem;

struct Totals {
  size_t n_tensors = 0;
  size_t bytes = 0;
  std::map<std::string, size_t> dtypes;  // safetensors dtype name -> tensor count

  void add(const std::string& dtype, size_t nbytes) {
    ++n_tensors;
    bytes += nbytes;
    ++dtypes[dtype];
  }
  void add(const Totals& t) {
    n_tensors += t.n_tensors;
    bytes += t.bytes;
    for (const auto& [k, v] : t.dtypes) dtypes[k] += v;
  }
  std::string str() const {
    std::string s = str_cat(n_tensors, " tensors, ", bytes, " bytes (", human(bytes), ")");
    for (const auto& [k, v] : dtypes) s += str_cat(", ", k, " x", v);
    return s;
  }
  nlohmann::json to_json() const { return {{"n_tensors", n_tensors}, {"bytes", bytes}, {"dtypes", dtypes}}; }
  static std::string human(size_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
  }
};

bool holds_weights(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && (e.path().extension() == ".safetensors" || name.ends_with(".safetensors.index.json")))
      return true;
  }
  return false;
}

// Each weight set to describe: the path itself, or (a model folder) each subfolder holding weights.
std::vector<std::string> weight_sets(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec) || holds_weights(path)) return {path};
  std::vector<std::string> sets;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_directory() && holds_weights(e.path())) sets.push_back(e.path().string());
  std::sort(sets.begin(), sets.end());
  FLUX_CHECK(!sets.empty(), path, ": no .safetensors file, index or model subfolder (transformer/, vae/, ",
             "text_encoder/, text_encoder_2/) in this folder");
  return sets;
}

std::string shape_str(const Shape& s) { return s.str(); }

// A value as one short line: long or multi-line strings by their length.
std::string shown(const std::string& v) {
  const bool plain = v.size() <= 60 && std::none_of(v.begin(), v.end(), [](char c) { return c == '\n' || c == '\r'; });
  return plain ? v : str_cat("(", v.size(), " chars)");
}

// One GGUF file: header facts, KV pairs (arrays: element type, length, first values), tensors in file order.
void describe_gguf(const std::string& file, bool json, bool summary, Totals& totals, nlohmann::json& out) {
  const GgufFile g = GgufFile::open(file);
  nlohmann::json tensors = nlohmann::json::array(), kv = nlohmann::json::object();
  if (!json)
    std::printf("%s (GGUF v%u, alignment %llu, data at byte %zu, %zu KV pairs)\n", file.c_str(), g.version(),
                static_cast<unsigned long long>(g.alignment()), g.data_offset(), g.kv().size());
  for (const GgufKV& p : g.kv()) {
    const GgufArray* a = p.value.as_array();
    const std::string type = a ? str_cat("array of ", gguf_type_name(a->type)) : gguf_type_name(p.value.type());
    if (json) {
      kv[p.key] = {{"type", type}, {"value", p.value.str(4)}};
      if (a) kv[p.key]["length"] = a->items.size();
    } else {
      std::printf("  kv %s (%s): %s\n", p.key.c_str(), type.c_str(),
                  a ? p.value.str(4).c_str() : shown(p.value.str()).c_str());
    }
  }
  for (const GgufTensorInfo& t : g.tensors()) {
    const char* type = ggml_type_name(t.ggml_type);
    totals.add(type, t.nbytes);
    if (json)
      tensors.push_back({{"name", t.name},
                         {"dtype", type},
                         {"shape", t.shape.to_vector()},
                         {"ne", t.ne},
                         {"bytes", t.nbytes},
                         {"offset", t.offset}});
    else if (!summary)
      std::printf("  %-56s %-7s %-22s %12zu\n", t.name.c_str(), type, shape_str(t.shape).c_str(), t.nbytes);
  }
  if (json) {
    out = totals.to_json();
    out["path"] = file;
    out["format"] = "gguf";
    out["gguf"] = {{"version", g.version()}, {"alignment", g.alignment()}, {"data_offset", g.data_offset()}};
    out["kv"] = std::move(kv);
    out["tensors"] = std::move(tensors);
  } else {
    std::printf("  total: %s\n", totals.str().c_str());
  }
}

int run_info(const std::string& path, bool json, bool summary) {
  nlohmann::json out_files = nlohmann::json::array();
  Totals overall;
  size_t n_files = 0;
  for (const std::string& set : weight_sets(path)) {
    // Opening the set as a WeightStore checks an index against its shards and names unique across files.
    const WeightStore store = WeightStore::open(set);
    for (const std::string& file : store.files()) {
      Totals totals;
      if (is_gguf_file(file)) {
        nlohmann::json f;
        describe_gguf(file, json, summary, totals, f);
        if (json) out_files.push_back(std::move(f));
        overall.add(totals);
        ++n_files;
        continue;
      }
      const SafetensorsFile st = SafetensorsFile::open(file);
      nlohmann::json tensors = nlohmann::json::array();
      if (!json) std::printf("%s\n", file.c_str());
      for (const SafetensorsEntry& e : st.entries()) {
        totals.add(safetensors_dtype_name(e.dtype), e.nbytes);
        if (json)
          tensors.push_back({{"name", e.name},
                             {"dtype", safetensors_dtype_name(e.dtype)},
                             {"shape", e.shape.to_vector()},
                             {"bytes", e.nbytes},
                             {"offset", e.offset}});
        else if (!summary)
          std::printf("  %-56s %-7s %-22s %12zu\n", e.name.c_str(), safetensors_dtype_name(e.dtype),
                      shape_str(e.shape).c_str(), e.nbytes);
      }
      if (json) {
        nlohmann::json f = totals.to_json();
        f["path"] = file;
        f["metadata"] = st.metadata();
        f["tensors"] = std::move(tensors);
        out_files.push_back(std::move(f));
      } else {
        for (const auto& [k, v] : st.metadata()) {
          const std::string value = v.size() <= 60 ? v : str_cat("(", v.size(), " chars)");
          std::printf("  __metadata__ %s: %s\n", k.c_str(), value.c_str());
        }
        std::printf("  total: %s\n", totals.str().c_str());
      }
      overall.add(totals);
      ++n_files;
    }
  }
  if (json) {
    nlohmann::json out = overall.to_json();
    out["path"] = path;
    out["n_files"] = n_files;
    out["files"] = std::move(out_files);
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("overall: %zu file%s, %s\n", n_files, n_files == 1 ? "" : "s", overall.str().c_str());
  }
  return 0;
}

CommandRegistrar reg(
    {"info", "List the tensors of a .safetensors or .gguf file, a sharded index, or a model folder", [](CLI::App& sub) {
       auto path = std::make_shared<std::string>();
       auto json = std::make_shared<bool>(false);
       auto summary = std::make_shared<bool>(false);
       sub.add_option("path", *path, ".safetensors or .gguf file, *.safetensors.index.json, or folder")->required();
       sub.add_flag("--json", *json, "machine-readable output");
       sub.add_flag("--summary", *summary, "totals only, no per-tensor lines");
       return [=] { return run_info(*path, *json, *summary); };
     }});

}  // namespace
}  // namespace flux::cli
