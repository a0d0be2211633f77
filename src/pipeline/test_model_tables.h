// make-test-model's parameter tables (pipeline-internal; see test_model.h): per size, each component's
// parameters in BFL / HF names, the diffusers names they map to, and the configs the layouts carry.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "pipeline/test_model.h"
#include "pipeline/test_model_write.h"

namespace flux::test_model {

struct Sizes {
  // transformer
  int64_t hidden, heads, depth, single_depth;
  std::array<int64_t, 3> axes;
  // CLIP-L
  int64_t clip_hidden, clip_inter, clip_layers, clip_heads;
  // T5
  int64_t t5_d, t5_kv, t5_heads, t5_ff, t5_layers;
  // autoencoder
  int64_t ae_ch;
  std::vector<int64_t> ae_mult;
  int64_t ae_res;
};
Sizes sizes_for(TestModelSize s);

// Parameters, in the order the values are drawn (linear weights N(0, (0.5/sqrt(in))^2), biases N(0, 0.02^2),
// norms 1 and 0, convs N(0, (0.8/sqrt(fan_in))^2)).
Params flux_weights(const Sizes& s, bool dev);  // BFL names
Params ae_weights(const Sizes& s);              // BFL names
Params clip_weights(const Sizes& s);            // HF CLIPTextModel names
Params t5_weights(const Sizes& s);              // HF T5EncoderModel names

// Each parameter whole under its own name (dtype f32; the caller sets it).
std::vector<OutTensor> as_stored(const Params& params);
// FluxTransformer2DModel names: q/k/v split, norm_out halves swapped (row ranges of the BFL parameters).
std::vector<OutTensor> flux_to_diffusers(const Params& bfl, const Sizes& s);
// One BFL AE tensor -> AutoencoderKL name; 1x1 attention convs become [C, C].
OutTensor ae_to_diffusers(const OutTensor& t, int64_t n_levels);

nlohmann::json flux_config(const Sizes& s, bool dev);  // BFL-style, in single files' __metadata__
nlohmann::json flux_diffusers_config(const Sizes& s, bool dev);
nlohmann::json ae_config(const Sizes& s);
nlohmann::json ae_diffusers_config(const Sizes& s);
nlohmann::json clip_config(const Sizes& s);
nlohmann::json t5_config(const Sizes& s);

}  // namespace flux::test_model
