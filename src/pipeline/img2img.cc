// Image-to-image pieces (see img2img.h). References: diffusers pipeline_flux_img2img.py get_timesteps and
// prepare_latents, scheduling_flow_match_euler_discrete.py scale_noise; BFL AutoEncoder.encode (sample_z=False).
#include "pipeline/img2img.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "io/image_resize.h"
#include "pipeline/sampling.h"

namespace flux {

int img2img_t_start(int steps, double strength) {
  FLUX_CHECK(std::isfinite(strength) && strength >= 0.0 && strength <= 1.0,
             "strength: expected a number in [0, 1], got ", strength);
  FLUX_CHECK(steps >= 1, "steps: expected at least 1, got ", steps);
  const double n = steps;
  const double init_timestep = std::min(n * strength, n);
  const int t_start = static_cast<int>(std::max(n - init_timestep, 0.0));  // int() truncates toward zero
  FLUX_CHECK(steps - t_start >= 1, "strength ", strength, " with ", steps, " steps runs no denoising step (", steps,
             " * ", strength, " = ", n * strength,
             " < 1): raise strength or steps so that strength * steps is at least 1");
  return t_start;
}

std::vector<float> trim_schedule(std::span<const float> full, int t_start) {
  FLUX_CHECK(t_start >= 0 && static_cast<size_t>(t_start) + 2 <= full.size(), "img2img: t_start ", t_start,
             " leaves no step of a schedule of ", full.size(), " values");
  return std::vector<float>(full.begin() + t_start, full.end());
}

Tensor image_to_tensor(const Image& image) {
  FLUX_CHECK(image.width > 0 && image.height > 0 &&
                 image.pixels.size() == static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3,
             "init image: expected RGB pixels for ", image.width, "x", image.height, ", got ", image.pixels.size(),
             " bytes");
  const int64_t h = image.height, w = image.width;
  Tensor x = Tensor::empty(DType::f32, Shape{3, h, w});
  float* dst = x.mut<float>();
  const uint8_t* src = image.pixels.data();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < h * w; ++i) dst[c * h * w + i] = static_cast<float>(src[i * 3 + c]) / 127.5f - 1.0f;
  return x;
}

Tensor encode_init_image(const AutoEncoder& vae, const Image& image, int width, int height, const VaeTiling& tiling) {
  const Image fitted = resize_cover(image, width, height);
  const Tensor z = vae.encode(image_to_tensor(fitted), tiling);  // [16, H/8, W/8]
  return pack_latent(z);                                         // [S, 64]
}

Tensor mix_noise(const Tensor& noise, const Tensor& x0, float t0) {
  FLUX_CHECK(noise.dtype() == DType::f32 && x0.dtype() == DType::f32 && noise.shape() == x0.shape(), "img2img: noise ",
             noise.describe(), " and image latents ", x0.describe(), " must be f32 of one shape");
  Tensor out = Tensor::empty(DType::f32, noise.shape());
  const float* n = noise.data<float>();
  const float* x = x0.data<float>();
  float* o = out.mut<float>();
  const float keep = 1.0f - t0;
  for (int64_t i = 0; i < out.numel(); ++i) {
    const float a = t0 * n[i];
    const float b = keep * x[i];
    o[i] = a + b;
  }
  return out;
}

}  // namespace flux
