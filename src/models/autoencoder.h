// The FLUX autoencoder (BFL flux/modules/autoencoder.py AutoEncoder): a 16-channel KL VAE. decode() maps a
// sampler-space latent to an image in [-1, 1] (unclamped); encode() gives the distribution mean, scaled.
// Weights by BFL names (ae.safetensors) or diffusers AutoencoderKL names (vae/), mapped in one table.
// Activations stay in the convolutions' channel-blocked layout (kernels/conv_layer.h) from the first layer to
// the last; large images can be decoded / encoded in overlapping tiles blended with linear ramps.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "kernels/conv_layer.h"
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

struct AutoEncoderOptions {
  // The convolutions' compute dtype: f32, bf16 (where conv_bf16_supported(), else f32), or unset: from
  // kernels::default_precision(): f32 -> f32, bf16 or int8 -> bf16, automatic -> bf16 when
  // kernels::linear_compute_dtype() is bf16 (AVX512_BF16, measured fast) and the conv weights are stored in 16
  // bits, else f32 (f32 weights stay f32, as in kernels::Linear). FLUX_VAE_BF16=1 / 0 overrides the unset case.
  std::optional<DType> compute;
  // per_call: the old path (plain layouts, a oneDNN primitive and reorders per call), for benchmarks.
  kernels::ConvMode conv_mode = kernels::ConvMode::cached;
};

// The compute dtype asked for a convolution whose weight is stored as `stored` (the rule above).
DType vae_conv_compute(DType stored, const AutoEncoderOptions& options = {});

// Tiled decode / encode: tiles of at most `tile` pixels a side, `overlap` pixels shared with each neighbour
// (blended with linear ramps). Sizes are rounded to multiples of 8; tiles are spread evenly, so they may be
// smaller than `tile`. tile 0 = one pass over the whole image.
struct VaeTiling {
  int64_t tile = 0;
  int64_t overlap = 64;
};

class AutoEncoder {
 public:
  // Binds the decoder always and the encoder when its weights are present (img2img).
  static AutoEncoder load(WeightStore& store, const AutoEncoderParams& params, const AutoEncoderOptions& options = {});
  const AutoEncoderParams& params() const { return params_; }
  bool has_encoder() const;

  // z: F32 [z_channels, H/8, W/8] in sampler space -> image F32 [3, H, W] (z / scale + shift first).
  Tensor decode(const Tensor& z, const VaeTiling& tiling = {}) const;
  // x: F32 [3, H, W] in [-1, 1] -> z F32 [z_channels, H/8, W/8] = scale * (mean - shift).
  Tensor encode(const Tensor& x, const VaeTiling& tiling = {}) const;
  // The raw encoder output [2 * z_channels, H/8, W/8] (mean, logvar), for tests.
  Tensor encode_moments(const Tensor& x, const VaeTiling& tiling = {}) const;
  DType compute_dtype() const;  // of the convolutions

  // Bytes of activations an untiled decode of a width x height image holds at its peak (three feature maps of
  // the widest full-resolution level), and the tiling `decode` should use when the caller asks for automatic
  // tiling: none up to kAutoTileBytes, else tiles of kAutoTile pixels.
  static constexpr uint64_t kAutoTileBytes = uint64_t{2} << 30;
  static constexpr int64_t kAutoTile = 512;
  static uint64_t decode_activation_bytes(const AutoEncoderParams& params, int64_t width, int64_t height);
  static VaeTiling auto_tiling(const AutoEncoderParams& params, int64_t width, int64_t height);

 private:
  struct Impl;
  AutoEncoderParams params_;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace flux
