// Reading a model's configuration: config.json files (HF / diffusers), a JSON "config" in the safetensors
// __metadata__, and the field checks every model's resolve() shares. Errors name the file and the field.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/weight_store.h"

namespace flux::config {

// Parses `text`; `source` names it in the error ("<file>: invalid JSON: ...").
nlohmann::json parse_json(const std::string& text, const std::string& source);
nlohmann::json read_json_file(const std::string& path);
// The config file `config_path` names: the file itself, or config.json inside a folder ("" when the folder
// has none, or config_path is empty). A named file that does not exist is an error mentioning `what`.
std::string find_config_file(const std::string& config_path, const std::string& what);
// The store's __metadata__ "config" as JSON (null when absent); `source` is set to name it in messages.
nlohmann::json metadata_config(const WeightStore& store, std::string& source);

// Sets `value` from j[key] when present: a positive integer / any number; else an Error naming the field.
void read_field(const nlohmann::json& j, const char* key, int64_t& value, const std::string& source);
void read_field(const nlohmann::json& j, const char* key, float& value, const std::string& source);

// "a.safetensors, b.safetensors": the store's files, for messages.
std::string files_of(const WeightStore& store);

}  // namespace flux::config
