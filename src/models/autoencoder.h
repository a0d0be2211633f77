// The FLUX autoencoder (BFL flux/modules/autoencoder.py AutoEncoder): a 16-channel KL VAE. decode() maps a
// sampler-space latent to an image in [-1, 1] (unclamped); encode() gives the distribution mean, scaled.
// Weights by BFL names (ae.safetensors) or diffusers AutoencoderKL names (vae/), mapped in one table.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "tensor/tensor.h"

namespace flux {

struct AutoEncoderParams {
  int64_t resolution = 256;
  int64_t in_channels = 3;
  int64_t ch = 128;
  int64_t out_ch = 3;
  std::vector<int64_t> ch_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 16;
  float scale_factor = 0.3611f;
  float shift_factor = 0.1159f;

  static AutoEncoderParams flux();
  // config.json (diffusers) / __metadata__ / shapes.
  static AutoEncoderParams resolve(const WeightStore& store, const std::string& config_path);
};

class AutoEncoder {
 public:
  // Binds the decoder always and the encoder when its weights are present (img2img).
  static AutoEncoder load(WeightStore& store, const AutoEncoderParams& params);
  const AutoEncoderParams& params() const { return params_; }
  bool has_encoder() const;

  // z: F32 [z_channels, H/8, W/8] in sampler space -> image F32 [3, H, W] (z / scale + shift first).
  Tensor decode(const Tensor& z) const;
  // x: F32 [3, H, W] in [-1, 1] -> z F32 [z_channels, H/8, W/8] = scale * (mean - shift).
  Tensor encode(const Tensor& x) const;
  // The raw encoder output [2 * z_channels, H/8, W/8] (mean, logvar), for tests.
  Tensor encode_moments(const Tensor& x) const;

 private:
  struct Impl;
  AutoEncoderParams params_;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace flux
