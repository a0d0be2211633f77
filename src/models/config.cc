#include "models/config.h"

#include <filesystem>
#include <fstream>

#include "base/error.h"

namespace flux::config {

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": invalid JSON: ", e.what());
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  FLUX_CHECK(in.good(), "cannot read ", path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_json(text, path);
}

std::string find_config_file(const std::string& config_path, const std::string& what) {
  namespace fs = std::filesystem;
  if (config_path.empty()) return "";
  if (fs::is_directory(config_path)) {
    const fs::path p = fs::path(config_path) / "config.json";
    return fs::exists(p) ? p.string() : "";
  }
  FLUX_CHECK(fs::exists(config_path), what, " config: file not found: ", config_path);
  return config_path;
}

nlohmann::json metadata_config(const WeightStore& store, std::string& source) {
  const auto it = store.metadata().find("config");
  if (it == store.metadata().end()) return nullptr;
  source = "__metadata__ \"config\" of " + files_of(store);
  return parse_json(it->second, source);
}

void read_field(const nlohmann::json& j, const char* key, int64_t& value, const std::string& source) {
  if (!j.contains(key)) return;
  FLUX_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() > 0, source, ": field \"", key,
             "\": expected a positive integer, got ", j[key].dump());
  value = j[key].get<int64_t>();
}

void read_field(const nlohmann::json& j, const char* key, float& value, const std::string& source) {
  if (!j.contains(key)) return;
  FLUX_CHECK(j[key].is_number(), source, ": field \"", key, "\": expected a number, got ", j[key].dump());
  value = j[key].get<float>();
}

std::string files_of(const WeightStore& store) {
  std::string s;
  for (const std::string& f : store.files()) s += (s.empty() ? "" : ", ") + f;
  return s;
}

}  // namespace flux::config
