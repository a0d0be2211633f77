// A job's request across Redis (cluster/job_codec.h): JSON for the numbers and names, binary fields for the init
// image (PNG) and explicit noise (F32 values).
#include <cstring>
#include <nlohmann/json.hpp>

#include "cluster/job_codec.h"
#include "io/image.h"
#include "pipeline/lora_dir.h"

namespace flux::cluster {
namespace {

using nlohmann::json;

constexpr const char* kWhat = "job request";

template <typename T>
T get(const json& j, const char* field) {
  FLUX_CHECK(j.contains(field), kWhat, ": field \"", field, "\" missing");
  try {
    return j.at(field).get<T>();
  } catch (const json::exception& e) {
    fail(kWhat, ": field \"", field, "\": ", e.what());
  }
}

}  // namespace

JobPayload encode_request(const GenerateRequest& r, const std::string& lora_dir) {
  json j = {{"prompt", r.prompt},     {"width", r.width}, {"height", r.height},   {"steps", r.steps},
            {"guidance", r.guidance}, {"seed", r.seed},   {"preview", r.preview}, {"strength", r.strength}};
  json loras = json::array();
  for (const LoraSpec& l : r.loras)
    loras.push_back({{"name", lora_dir.empty() ? l.path : lora_name_of(lora_dir, l.path)}, {"strength", l.strength}});
  j["loras"] = std::move(loras);
  JobPayload p;
  if (r.noise.defined()) {
    const Tensor noise = r.noise.to(DType::f32);
    j["noise_shape"] = noise.shape().to_vector();
    p.noise.assign(static_cast<const char*>(noise.raw()), noise.nbytes());
  }
  if (r.init_image) {
    const std::vector<uint8_t> png = encode_png(*r.init_image);
    p.image.assign(png.begin(), png.end());
  }
  p.request = j.dump();
  return p;
}

GenerateRequest decode_request(const JobPayload& p, uint64_t max_image_pixels) {
  json j;
  try {
    j = json::parse(p.request);
  } catch (const json::exception& e) {
    fail(kWhat, ": not JSON: ", e.what());
  }
  FLUX_CHECK(j.is_object(), kWhat, ": expected a JSON object");
  GenerateRequest r;
  r.prompt = get<std::string>(j, "prompt");
  r.width = get<int>(j, "width");
  r.height = get<int>(j, "height");
  r.steps = get<int>(j, "steps");
  r.guidance = get<float>(j, "guidance");
  r.seed = get<uint64_t>(j, "seed");
  r.preview = get<bool>(j, "preview");
  if (j.contains("strength")) r.strength = get<double>(j, "strength");
  if (j.contains("loras")) {
    const json& loras = j.at("loras");
    FLUX_CHECK(loras.is_array(), kWhat, ": field \"loras\": expected an array");
    for (const json& l : loras) {
      FLUX_CHECK(l.is_object(), kWhat, ": field \"loras\": expected {name, strength} objects");
      r.loras.push_back({get<std::string>(l, "name"), get<float>(l, "strength")});
    }
  }
  if (j.contains("noise_shape") || !p.noise.empty()) {
    const auto dims = get<std::vector<int64_t>>(j, "noise_shape");
    FLUX_CHECK(!dims.empty() && dims.size() <= static_cast<size_t>(Shape::kMaxDims), kWhat,
               ": noise_shape: expected 1 to ", Shape::kMaxDims, " dimensions, got ", dims.size());
    uint64_t numel = 1;
    for (int64_t d : dims) {
      FLUX_CHECK(d > 0 && d <= (1 << 24), kWhat, ": noise_shape: expected dimensions in 1..2^24, got ", d);
      numel *= static_cast<uint64_t>(d);
      FLUX_CHECK(numel <= (1u << 28), kWhat, ": noise_shape: more than 2^28 values");
    }
    FLUX_CHECK(p.noise.size() == numel * sizeof(float), kWhat, ": noise: expected ", numel * sizeof(float),
               " bytes (F32 of noise_shape), got ", p.noise.size());
    std::vector<float> values(numel);
    std::memcpy(values.data(), p.noise.data(), p.noise.size());
    r.noise = Tensor::from_f32(Shape(std::span<const int64_t>(dims)), values);
  }
  if (!p.image.empty())
    r.init_image = std::make_shared<const Image>(
        decode_image(reinterpret_cast<const uint8_t*>(p.image.data()), p.image.size(), "job image", max_image_pixels));
  return r;
}

std::vector<std::string> payload_fields(const JobPayload& p) {
  std::vector<std::string> f = {"request", p.request};
  if (!p.image.empty()) f.insert(f.end(), {"image", p.image});
  if (!p.noise.empty()) f.insert(f.end(), {"noise", p.noise});
  return f;
}

JobPayload payload_from_fields(const Reply& fields) {
  return {fields.field("request"), fields.field("image"), fields.field("noise")};
}

void resolve_loras(GenerateRequest& r, const std::string& lora_dir) {
  if (r.loras.empty()) return;
  FLUX_CHECK(!lora_dir.empty(), "loras: this server has no LoRA folder (start it with serve --lora-dir DIR)");
  for (size_t i = 0; i < r.loras.size(); ++i) {
    try {
      r.loras[i].path = resolve_lora_name(lora_dir, r.loras[i].path);
    } catch (const LoraNameError& e) {
      fail("loras[", i, "]: ", e.what());
    }
  }
}

}  // namespace flux::cluster
