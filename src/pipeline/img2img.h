// Image-to-image (diffusers FluxImg2ImgPipeline, expressed with BFL's components; shared/golden/img2img/README.md):
// the init image is fitted to the requested size (io/image_resize.h: scale to cover, centre crop), mapped to
// [-1, 1], encoded by the VAE (distribution mean: x0 = scale * (mean - shift)), packed, and mixed with the noise
// at the first timestep of the schedule trimmed by strength; the Euler loop then runs on the trimmed schedule.
#pragma once

#include <span>
#include <vector>

#include "io/image.h"
#include "models/autoencoder.h"
#include "tensor/tensor.h"

namespace flux {

// diffusers get_timesteps in Python double arithmetic:
//   init_timestep = min(steps * strength, steps); t_start = int(max(steps - init_timestep, 0))  (truncation)
// Throws Error naming strength and steps when strength is outside [0, 1] or not finite, or when no step would
// run (steps - t_start < 1).
int img2img_t_start(int steps, double strength);

// The schedule from t_start on: full[t_start:] (steps - t_start steps plus the final 0).
std::vector<float> trim_schedule(std::span<const float> full, int t_start);

// RGB u8 [H, W, 3] -> F32 [3, H, W] = u8 / 127.5 - 1 (BFL's conversion).
Tensor image_to_tensor(const Image& image);

// x0, packed F32 [S, 64]: `image` fitted to width x height, encoded (the distribution mean, scaled and
// shifted), packed as prepare() does.
Tensor encode_init_image(const AutoEncoder& vae, const Image& image, int width, int height,
                         const VaeTiling& tiling = {});

// x_init = t0 * noise + (1 - t0) * x0 on the packed tensors (F32, same shape), each product and the sum rounded
// to float32 as torch does (FlowMatchEulerDiscreteScheduler.scale_noise).
Tensor mix_noise(const Tensor& noise, const Tensor& x0, float t0);

}  // namespace flux
