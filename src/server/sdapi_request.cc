// POST /sdapi/v1/txt2img and /img2img bodies -> SdapiRequest (sdapi.h). The field names and defaults are
// AUTOMATIC1111's (modules/api/models.py: StableDiffusionTxt2ImgProcessingAPI / Img2Img); what FLUX.1 has no use
// for is accepted silently while it holds A1111's neutral value, else ignored with a warning.
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "pipeline/lora_dir.h"
#include "server/errors.h"
#include "server/sdapi.h"

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

// An integer, or a number with an integral value (Python clients may send 512.0).
int64_t get_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (v.is_number_float()) {
    const double x = v.get<double>();
    if (!std::isfinite(x) || std::floor(x) != x || std::fabs(x) > 9e15)
      bad(name, str_cat(name, ": expected an integer, got ", x));
    if (x < static_cast<double>(lo) || x > static_cast<double>(hi))
      bad(name, str_cat(name, ": expected ", lo, "..", hi, ", got ", x));
    return static_cast<int64_t>(x);
  }
  if (!v.is_number_integer()) bad(name, str_cat(name, ": expected an integer, got ", type_name(v)));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    bad(name, str_cat(name, ": expected ", lo, "..", hi, ", got ", v.get<uint64_t>()));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) bad(name, str_cat(name, ": expected ", lo, "..", hi, ", got ", x));
  return x;
}

double get_number(const json& v, const std::string& name, double lo, double hi) {
  if (!v.is_number()) bad(name, str_cat(name, ": expected a number, got ", type_name(v)));
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) bad(name, str_cat(name, ": expected ", lo, "..", hi, ", got ", x));
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

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A1111 fields without an effect here, with the values that ask for nothing (accepted silently); any other value is
// ignored with a warning. Sampler knobs and hires-fix settings count only with their switch on.
struct Neutral {
  const char* key;
  const char* values;  // JSON array of neutral values; "*" = any value is silent
};
constexpr Neutral kNeutral[] = {
    {"styles", "[[]]"},
    {"subseed", "[-1, 0]"},
    {"subseed_strength", "[0]"},
    {"seed_resize_from_h", "[-1, 0]"},
    {"seed_resize_from_w", "[-1, 0]"},
    {"restore_faces", "[false]"},
    {"tiling", "[false]"},
    {"do_not_save_samples", "*"},
    {"do_not_save_grid", "*"},
    {"eta", "*"},
    {"s_min_uncond", "*"},
    {"s_churn", "[0]"},
    {"s_tmax", "*"},
    {"s_tmin", "[0]"},
    {"s_noise", "[1]"},
    {"override_settings_restore_afterwards", "*"},
    {"refiner_checkpoint", "[\"\"]"},
    {"refiner_switch_at", "[0]"},
    {"firstpass_image", "[\"\"]"},
    {"comments", "[{}]"},
    {"enable_hr", "[false]"},
    {"firstphase_width", "*"},
    {"firstphase_height", "*"},
    {"hr_scale", "*"},
    {"hr_upscaler", "*"},
    {"hr_second_pass_steps", "*"},
    {"hr_resize_x", "*"},
    {"hr_resize_y", "*"},
    {"hr_checkpoint_name", "*"},
    {"hr_sampler_name", "*"},
    {"hr_scheduler", "*"},
    {"hr_prompt", "*"},
    {"hr_negative_prompt", "*"},
    {"hr_cfg", "*"},
    {"hr_distilled_cfg", "*"},
    {"script_name", "[\"\"]"},
    {"script_args", "[[]]"},
    {"send_images", "[true]"},
    {"save_images", "[false]"},
    {"alwayson_scripts", "[{}]"},
    {"infotext", "[\"\"]"},
    {"force_task_id", "*"},
    {"image_cfg_scale", "*"},
    {"mask", "[\"\"]"},
    {"mask_blur", "*"},
    {"mask_blur_x", "*"},
    {"mask_blur_y", "*"},
    {"mask_round", "*"},
    {"inpainting_fill", "*"},
    {"inpaint_full_res", "*"},
    {"inpaint_full_res_padding", "*"},
    {"inpainting_mask_invert", "*"},
    {"initial_noise_multiplier", "*"},
    {"latent_mask", "[\"\"]"},
    {"resize_mode", "[1]"},
    {"include_init_images", "*"},
};

// true: a known A1111 field whose value asks for nothing; false: a warning is due. nullopt: not in the table.
std::optional<bool> neutral(const std::string& key, const json& value) {
  for (const Neutral& n : kNeutral) {
    if (key != n.key) continue;
    if (value.is_null() || std::string_view(n.values) == "*") return true;
    for (const json& v : json::parse(n.values))
      if (v == value) return true;
    return false;
  }
  return std::nullopt;
}

const char* why_ignored(const std::string& key) {
  if (key == "enable_hr") return "hires fix is not supported";
  if (key == "mask" || key == "latent_mask") return "inpainting is not supported; the whole image is redrawn";
  if (key == "resize_mode")
    return "the init image is always scaled to cover and centre-cropped (A1111's resize_mode 1, crop and resize)";
  if (key == "send_images") return "images are always sent";
  if (key == "save_images") return "the server saves nothing";
  if (key == "restore_faces") return "face restoration is not available";
  if (key == "styles") return "styles are not available";
  return "not supported";
}

bool is_sampler_euler(const std::string& s) {
  const std::string l = lower(s);
  return l == "euler" || l == "k_euler" || l == "euler (flow)";
}

bool is_scheduler_simple(const std::string& s) {
  const std::string l = lower(s);
  return l == "simple" || l == "automatic";
}

// override_settings: a sd_model_checkpoint naming another model is a warning (the served one answers); every other
// key is ignored with a warning.
void parse_override_settings(const json& v, std::optional<Variant> variant, std::vector<std::string>& warnings) {
  if (!v.is_object()) bad("override_settings", str_cat("override_settings: expected an object, got ", type_name(v)));
  for (const auto& [key, value] : v.items()) {
    if (key != "sd_model_checkpoint") {
      warnings.push_back(str_cat("override_settings.", key, ": ignored (not supported)"));
      continue;
    }
    const std::string ours = sdapi_model_name(variant);
    if (!value.is_null() && (!value.is_string() || !sdapi_names_model(value.get<std::string>(), ours)))
      warnings.push_back(
          str_cat("override_settings.sd_model_checkpoint: ", value.dump(), " is not served here; used ", ours));
  }
}

// The tags' adapters resolved in the LoRA folder: a name the folder does not have is skipped with a warning (A1111
// does the same); a path escaping the folder is a 400.
void add_lora_tags(const std::vector<LoraTag>& tags, const Limits& limits, SdapiRequest& r) {
  for (const LoraTag& tag : tags) {
    const std::string label = str_cat("<lora:", tag.name, ">");
    if (limits.lora_dir.empty() && !limits.lora_names_only) {
      r.warnings.push_back(str_cat(label, ": ignored, this server has no LoRA folder (serve --lora-dir DIR)"));
      continue;
    }
    if (!(tag.weight >= -10 && tag.weight <= 10))
      bad("prompt", str_cat("prompt: ", label, ": expected a weight in -10..10, got ", tag.weight));
    if (tag.extra_weights)
      r.warnings.push_back(str_cat(label, ": only the first weight is used (one strength for the whole model)"));
    try {
      if (limits.lora_dir.empty()) {  // lora_names_only (a cluster API node): the worker resolves the name
        check_lora_name(tag.name);
        r.image.generate.loras.push_back({tag.name, static_cast<float>(tag.weight)});
        continue;
      }
      r.image.generate.loras.push_back({resolve_lora_name(limits.lora_dir, tag.name), static_cast<float>(tag.weight)});
    } catch (const LoraNameError& e) {
      if (e.kind == LoraNameError::Kind::not_found) {
        r.warnings.push_back(str_cat(label, ": no such adapter in the LoRA folder; ignored"));
        continue;
      }
      bad("prompt", str_cat("prompt: ", label, ": ", e.what()));
    }
  }
  if (r.image.generate.loras.size() > static_cast<size_t>(limits.max_loras))
    bad("prompt",
        str_cat("prompt: at most ", limits.max_loras, " <lora:...> tags, got ", r.image.generate.loras.size()));
}

}  // namespace

std::string sdapi_model_name(std::optional<Variant> variant) {
  if (!variant) return "flux.1";
  return *variant == Variant::dev ? "flux.1-dev" : "flux.1-schnell";
}

bool sdapi_names_model(std::string name, const std::string& ours) {
  const size_t bracket = name.find(" [");
  if (bracket != std::string::npos) name.resize(bracket);
  const std::string ext = ".safetensors";
  if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
    name.resize(name.size() - ext.size());
  if (name == ours) return true;
  return ours == "flux.1" && name.rfind("flux.1", 0) == 0;  // still loading: the variant is not known yet
}

std::vector<LoraTag> extract_lora_tags(std::string& prompt) {
  std::vector<LoraTag> tags;
  std::string out;
  size_t at = 0;
  for (;;) {
    const size_t open = prompt.find("<lora:", at);
    const size_t close = open == std::string::npos ? open : prompt.find('>', open);
    if (close == std::string::npos) {
      out.append(prompt, at, std::string::npos);
      break;
    }
    out.append(prompt, at, open - at);
    const std::string body = prompt.substr(open + 6, close - open - 6);  // NAME[:WEIGHT[:...]]
    const std::string tag_text = prompt.substr(open, close - open + 1);
    LoraTag tag;
    const size_t colon = body.find(':');
    tag.name = body.substr(0, colon);
    if (tag.name.empty()) bad("prompt", str_cat("prompt: ", tag_text, ": expected <lora:NAME:WEIGHT>, got no name"));
    if (colon != std::string::npos) {
      const std::string rest = body.substr(colon + 1);
      const size_t next = rest.find(':');
      const std::string w = rest.substr(0, next);
      const auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), tag.weight);
      if (w.empty() || ec != std::errc() || p != w.data() + w.size())
        bad("prompt", str_cat("prompt: ", tag_text, ": expected a number for the weight, got \"", w, "\""));
      tag.extra_weights = next != std::string::npos;
    }
    tags.push_back(std::move(tag));
    at = close + 1;
  }
  const size_t first = out.find_first_not_of(" ,\t\r\n");
  const size_t last = out.find_last_not_of(" ,\t\r\n");
  prompt = first == std::string::npos ? "" : out.substr(first, last - first + 1);
  return tags;
}

SdapiRequest parse_sdapi_request(std::string_view body, SdapiMode mode, const Limits& limits,
                                 std::optional<Variant> variant) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception& e) {
    throw HttpError(400, str_cat("request body: malformed JSON: ", e.what()), "", "invalid_json");
  }
  if (!doc.is_object()) throw HttpError(400, str_cat("request body: expected a JSON object, got ", type_name(doc)));

  SdapiRequest r;
  r.mode = mode;
  const bool img2img = mode == SdapiMode::img2img;
  GenerateRequest& g = r.image.generate;
  g.width = limits.default_width;
  g.height = limits.default_height;
  g.preview = true;   // /sdapi/v1/progress shows the latest step
  g.strength = 0.75;  // A1111's denoising_strength default
  std::optional<double> distilled;
  std::optional<int64_t> seed;
  bool has_prompt = false, disable_extra_networks = false, include_init_images = false;
  bool has_width = false, has_height = false;
  for (const auto& [key, value] : doc.items()) {
    if (value.is_null()) continue;  // A1111's optional fields: null = not given
    if (key == "prompt") {
      r.prompt = get_string(value, key);
      has_prompt = true;
    } else if (key == "negative_prompt") {
      r.negative_prompt = get_string(value, key);
      if (r.negative_prompt.find_first_not_of(" \t\r\n") != std::string::npos)
        r.warnings.push_back("negative_prompt: ignored (FLUX.1 has no negative conditioning)");
    } else if (key == "width") {
      g.width = static_cast<int>(get_int(value, key, 16, 16384));
      has_width = true;
    } else if (key == "height") {
      g.height = static_cast<int>(get_int(value, key, 16, 16384));
      has_height = true;
    } else if (key == "steps") {
      g.steps = static_cast<int>(get_int(value, key, 1, limits.max_steps));
    } else if (key == "seed") {
      seed = get_int(value, key, -1, static_cast<int64_t>(kMaxSeed));
    } else if (key == "cfg_scale") {
      r.cfg_scale = get_number(value, key, 0, 100);
    } else if (key == "distilled_cfg_scale") {  // Forge's name for FLUX.1-dev's guidance
      distilled = get_number(value, key, 0, 100);
    } else if (key == "batch_size") {
      r.batch_size = static_cast<int>(get_int(value, key, 1, limits.max_n));
    } else if (key == "n_iter") {
      r.n_iter = static_cast<int>(get_int(value, key, 1, limits.max_n));
    } else if (key == "sampler_name" || key == "sampler_index") {
      const std::string s = get_string(value, key);
      if (!s.empty() && !is_sampler_euler(s))
        r.warnings.push_back(str_cat(key, ": \"", s, "\" is not available; used Euler (flow matching)"));
    } else if (key == "scheduler") {
      const std::string s = get_string(value, key);
      if (!s.empty() && !is_scheduler_simple(s))
        r.warnings.push_back(str_cat("scheduler: \"", s, "\" is not available; used simple"));
    } else if (key == "denoising_strength") {
      const double x = get_number(value, key, 0, 1);
      if (img2img) g.strength = x;  // txt2img: hires fix only, which is not supported
    } else if (key == "init_images" && img2img) {
      if (!value.is_array())
        bad(key, str_cat("init_images: expected an array of base64 images, got ", type_name(value)));
      if (value.empty()) bad(key, "init_images: expected one image, got an empty array");
      r.image.image = get_string(value[0], "init_images[0]");
      if (r.image.image.empty()) bad(key, "init_images[0]: expected a base64 PNG or JPEG, got an empty string");
      if (value.size() > 1) r.warnings.push_back("init_images: only the first image is used");
    } else if (key == "disable_extra_networks") {
      disable_extra_networks = get_bool(value, key);
    } else if (key == "include_init_images" && img2img) {
      include_init_images = get_bool(value, key);
    } else if (key == "override_settings") {
      parse_override_settings(value, variant, r.warnings);
    } else if (const auto silent = neutral(key, value)) {
      if (!*silent) r.warnings.push_back(str_cat(key, ": ignored (", why_ignored(key), ")"));
    } else {
      r.warnings.push_back(str_cat(key, ": unknown field; ignored"));
    }
  }
  if (!has_prompt) bad("prompt", "prompt: required");
  if (r.prompt.size() > 16384) bad("prompt", str_cat("prompt: at most 16384 bytes, got ", r.prompt.size()));
  g.prompt = r.prompt;
  const std::vector<LoraTag> tags = extract_lora_tags(g.prompt);
  if (!disable_extra_networks) add_lora_tags(tags, limits, r);
  if (g.prompt.empty()) bad("prompt", "prompt: expected a non-empty text (besides <lora:...> tags)");
  if (has_width != has_height)
    r.warnings.push_back(str_cat(has_width ? "height" : "width", ": not given; used ", has_width ? g.height : g.width));
  check_size(g.width, g.height, limits, "width");
  if (img2img && r.image.image.empty()) bad("init_images", "init_images: required (the picture to start from)");
  r.image.has_strength = img2img;
  if (static_cast<int64_t>(r.batch_size) * r.n_iter > limits.max_n)
    bad("batch_size", str_cat("batch_size x n_iter: at most ", limits.max_n, " images per request, got ", r.batch_size,
                              " x ", r.n_iter));
  r.image.n = r.batch_size * r.n_iter;
  g.seed = seed && *seed >= 0 ? static_cast<uint64_t>(*seed) : random_seed();

  // Guidance: FLUX.1-dev's distilled guidance. Forge sends it as distilled_cfg_scale (cfg_scale 1 = no real CFG);
  // A1111 clients send cfg_scale. FLUX.1-schnell has none.
  const bool schnell = variant && *variant == Variant::schnell;
  if (schnell) {
    if ((r.cfg_scale && *r.cfg_scale != 1) || distilled)
      r.warnings.push_back("cfg_scale: ignored (FLUX.1-schnell has no guidance)");
  } else if (distilled) {
    g.guidance = static_cast<float>(*distilled);
    if (r.cfg_scale && *r.cfg_scale != 1)
      r.warnings.push_back("cfg_scale: ignored (distilled_cfg_scale sets FLUX.1-dev's guidance)");
  } else if (r.cfg_scale) {
    g.guidance = static_cast<float>(*r.cfg_scale);
  }

  if (img2img && !include_init_images) doc["init_images"] = nullptr;
  r.parameters = doc.dump();
  return r;
}

}  // namespace flux::server
