#include "server/request.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <random>

#include "pipeline/lora_dir.h"
#include "server/errors.h"

namespace flux::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw HttpError(400, message, param, "invalid_value");
}

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  return std::string("a ") + v.type_name();
}

int64_t get_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad(name, str_cat(name, ": expected an integer, got ", type_name(v)));
  // Unsigned values above int64 max arrive as number_unsigned.
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    bad(name, str_cat(name, ": expected ", lo, "..", hi, ", got ", v.get<uint64_t>()));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) bad(name, str_cat(name, ": expected ", lo, "..", hi, ", got ", x));
  return x;
}

std::string get_string(const json& v, const std::string& name) {
  if (!v.is_string()) bad(name, str_cat(name, ": expected a string, got ", type_name(v)));
  return v.get<std::string>();
}

bool get_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) bad(name, str_cat(name, ": expected true or false, got ", type_name(v)));
  return v.get<bool>();
}

// `seed`: an integer in 0..kMaxSeed. Anything else (negative, fractional, too large to be an integer in JSON,
// a string) is refused with the range, not with the JSON type the number happened to parse as.
uint64_t parse_seed(const json& v) {
  const bool in_range = (v.is_number_unsigned() && v.get<uint64_t>() <= kMaxSeed) ||
                        (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() >= 0 &&
                         static_cast<uint64_t>(v.get<int64_t>()) <= kMaxSeed);
  if (!in_range)
    bad("seed", str_cat("seed: expected a whole number from 0 to ", kMaxSeed, " (2^53 - 1), got ",
                        v.is_number() ? v.dump() : type_name(v)));
  return v.get<uint64_t>();
}

// `loras`: [{"name": "...", "strength": 1.0}, ...] -> the adapters' files, resolved inside limits.lora_dir only
// (unknown name: 404; a path, "..", or a link out of the folder: 400; pipeline/lora_dir.h).
std::vector<LoraSpec> parse_loras(const json& v, const Limits& limits) {
  const std::string p = "loras";
  if (!v.is_array()) bad(p, str_cat("loras: expected an array of {\"name\", \"strength\"}, got ", type_name(v)));
  if (!v.empty() && limits.lora_dir.empty() && !limits.lora_names_only)
    bad(p, "loras: this server has no LoRA folder (start it with serve --lora-dir DIR)");
  if (v.size() > static_cast<size_t>(limits.max_loras))
    bad(p, str_cat("loras: at most ", limits.max_loras, " adapters, got ", v.size()));
  std::vector<LoraSpec> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& item = v[i];
    const std::string where = str_cat("loras[", i, "]");
    if (!item.is_object()) bad(p, str_cat(where, ": expected {\"name\", \"strength\"}, got ", type_name(item)));
    std::string name;
    float strength = 1.0f;
    for (const auto& [key, value] : item.items()) {
      if (key == "name") {
        if (!value.is_string()) bad(p, str_cat(where, ".name: expected a string, got ", type_name(value)));
        name = value.get<std::string>();
      } else if (key == "strength") {
        if (!value.is_number()) bad(p, str_cat(where, ".strength: expected a number, got ", type_name(value)));
        const double x = value.get<double>();
        if (!(x >= -10 && x <= 10)) bad(p, str_cat(where, ".strength: expected -10..10, got ", x));
        strength = static_cast<float>(x);
      } else {
        bad(p, str_cat(where, ": unknown field \"", key, "\" (expected name, strength)"));
      }
    }
    if (name.empty()) bad(p, str_cat(where, ".name: required"));
    try {
      if (limits.lora_dir.empty()) {  // lora_names_only: the worker resolves it
        check_lora_name(name);
        out.push_back({name, strength});
      } else {
        out.push_back({resolve_lora_name(limits.lora_dir, name), strength});
      }
    } catch (const LoraNameError& e) {
      const bool missing = e.kind == LoraNameError::Kind::not_found;
      throw HttpError(missing ? 404 : 400, str_cat(where, ": ", e.what()), p,
                      missing ? "lora_not_found" : "invalid_value");
    }
  }
  return out;
}

}  // namespace

uint64_t random_seed() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng() >> 32;
}

std::pair<int, int> parse_size(const std::string& size) {
  const size_t x = size.find('x');
  auto number = [&](std::string_view s, int& out) {
    if (s.empty() || s.size() > 6) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && out > 0;
  };
  int w = 0, h = 0;
  if (x == std::string::npos || !number(std::string_view(size).substr(0, x), w) ||
      !number(std::string_view(size).substr(x + 1), h))
    bad("size", str_cat("size: expected \"WIDTHxHEIGHT\" (e.g. \"1024x1024\"), got \"", size, "\""));
  return {w, h};
}

void check_size(int width, int height, const Limits& limits, const std::string& param) {
  if (width % 16 != 0 || height % 16 != 0)
    bad(param, str_cat(param, ": width and height must be multiples of 16, got ", width, "x", height));
  if (width < 64 || height < 64) bad(param, str_cat(param, ": expected at least 64x64, got ", width, "x", height));
  const int64_t pixels = static_cast<int64_t>(width) * height;
  if (pixels > limits.max_pixels)
    bad(param,
        str_cat(param, ": ", width, "x", height, " is ", pixels, " pixels, above the limit of ", limits.max_pixels));
}

ImageRequest parse_image_request(std::string_view body, Endpoint endpoint, const Limits& limits) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number that overflows
    throw HttpError(400, str_cat("request body: malformed JSON: ", e.what()), "", "invalid_json");
  }
  if (!doc.is_object()) throw HttpError(400, str_cat("request body: expected a JSON object, got ", type_name(doc)));

  ImageRequest r;
  GenerateRequest& g = r.generate;
  g.width = limits.default_width;
  g.height = limits.default_height;
  bool has_size = false, has_width = false, has_height = false, has_seed = false, has_prompt = false;
  const bool openai = endpoint == Endpoint::openai;
  for (const auto& [key, value] : doc.items()) {
    if (key == "prompt") {
      g.prompt = get_string(value, key);
      has_prompt = true;
    } else if (key == "model" || key == "user") {
      const std::string s = get_string(value, key);
      if (key == "model") r.model = s;
    } else if (key == "n") {
      r.n = static_cast<int>(get_int(value, key, 1, openai ? limits.max_n : 1));
    } else if (key == "size") {
      const std::string s = get_string(value, key);
      has_size = true;
      if (s != "auto") std::tie(g.width, g.height) = parse_size(s);
    } else if (key == "width" && !openai) {
      g.width = static_cast<int>(get_int(value, key, 16, 16384));
      has_width = true;
    } else if (key == "height" && !openai) {
      g.height = static_cast<int>(get_int(value, key, 16, 16384));
      has_height = true;
    } else if (key == "response_format") {
      const std::string s = get_string(value, key);
      if (s == "url") bad(key, "response_format: \"url\" is not supported (images are not hosted); use \"b64_json\"");
      if (s != "b64_json") bad(key, str_cat("response_format: expected \"b64_json\", got \"", s, "\""));
    } else if (key == "output_format") {
      const std::string s = get_string(value, key);
      if (s != "png") bad(key, str_cat("output_format: expected \"png\", got \"", s, "\""));
    } else if (key == "quality") {
      get_string(value, key);  // accepted for compatibility; the step count decides quality here
    } else if (key == "seed") {
      g.seed = parse_seed(value);
      has_seed = true;
    } else if (key == "steps") {
      g.steps = static_cast<int>(get_int(value, key, 1, limits.max_steps));
    } else if (key == "guidance") {
      if (!value.is_number()) bad(key, str_cat("guidance: expected a number, got ", type_name(value)));
      const double x = value.get<double>();
      if (!(x >= 0 && x <= 100)) bad(key, str_cat("guidance: expected 0..100, got ", x));
      g.guidance = static_cast<float>(x);
    } else if (key == "stream" && openai) {
      r.stream = get_bool(value, key);
    } else if (key == "partial_images" && openai) {
      r.partial_images = static_cast<int>(get_int(value, key, 0, 3));
    } else if (key == "preview" && !openai) {
      g.preview = get_bool(value, key);
    } else if (key == "image") {
      r.image = get_string(value, key);  // decoded later, off the I/O thread (image_upload.h)
      if (r.image.empty()) bad(key, "image: expected a base64 PNG or JPEG (or a data: URL), got an empty string");
    } else if (key == "strength") {
      if (!value.is_number()) bad(key, str_cat("strength: expected a number in [0, 1], got ", type_name(value)));
      const double x = value.get<double>();
      if (!(x >= 0 && x <= 1)) bad(key, str_cat("strength: expected a number in [0, 1], got ", x));
      g.strength = x;
      r.has_strength = true;
    } else if (key == "loras") {
      g.loras = parse_loras(value, limits);
    } else {
      bad(key, str_cat("unknown field \"", key, "\"",
                       openai ? ""
                              : " (native jobs: prompt, size or width+height, "
                                "steps, seed, guidance, preview, n, model, "
                                "response_format, output_format, image, strength, loras)"));
    }
  }
  if (!has_prompt) bad("prompt", "prompt: required");
  if (g.prompt.find_first_not_of(" \t\r\n") == std::string::npos) bad("prompt", "prompt: expected a non-empty string");
  if (g.prompt.size() > 16384) bad("prompt", str_cat("prompt: at most 16384 bytes, got ", g.prompt.size()));
  if (has_size && (has_width || has_height)) bad("size", "size: give either size or width + height, not both");
  if (has_width != has_height) bad(has_width ? "height" : "width", "width and height: give both or neither");
  check_size(g.width, g.height, limits, has_width ? "width" : "size");
  if (!has_seed) g.seed = random_seed();
  if (r.partial_images > 0 && !r.stream) bad("partial_images", "partial_images: requires \"stream\": true");
  if (r.stream && r.n != 1) bad("n", str_cat("n: streaming answers one image, expected 1, got ", r.n));
  g.preview = g.preview || r.partial_images > 0;
  return r;
}

}  // namespace flux::server
