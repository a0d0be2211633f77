// The flow-matching sampler of BFL flux/sampling.py: noise (get_noise), packing of the latent into 2x2 patch
// tokens (prepare), the time schedule (get_schedule, with the dev shift), the Euler loop (denoise), unpack,
// and the uint8 conversion of the decoded image (cli.py save_image, without the watermark).
// Everything is float32 and follows the reference's order of operations, so the schedule is bit-exact and
// the latents match torch's to rounding (see shared/golden/MANIFEST.md "Conventions").
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <stop_token>
#include <vector>

#include "io/image.h"
#include "pipeline/torch_random.h"
#include "tensor/tensor.h"

namespace flux {

// torch.linspace(start, end, n) in float32, with torch's symmetric formula (the first half counts from
// start, the second half from end): step = (end - start) / (n - 1) in float32. This is torch's element-wise
// path, which it takes for n < 2 vectors (n < 32 on AVX-512, n < 16 on AVX2 CPUs); for longer schedules torch
// fills the leading pairs of vectors with Vectorized::arange (base + i * step), which can differ in the last bit.
std::vector<float> torch_linspace_f32(float start, float end, int n);

// BFL get_lin_function(x1=256, y1=base_shift, x2=4096, y2=max_shift)(image_seq_len), in double.
double schedule_mu(int64_t image_seq_len, double base_shift = 0.5, double max_shift = 1.15);

// BFL get_schedule(steps, image_seq_len, shift): steps+1 values from 1 down to 0. With shift (dev), each t
// becomes e^mu / (e^mu + 1/t - 1) evaluated in float32 as torch does: (1 / (E + (1/t - 1))) * E with
// E = float32(exp(mu)); t = 0 stays 0.
std::vector<float> get_schedule(int steps, int64_t image_seq_len, bool shift, double base_shift = 0.5,
                                double max_shift = 1.15);

// BFL get_noise(1, height, width, seed) in float32 on the CPU (TorchGenerator: bit-exact torch.randn): F32 [16,
// 2*ceil(H/16), 2*ceil(W/16)].
Tensor get_noise(int height, int width, uint64_t seed);

// prepare(): latent F32 [C, h, w] (h, w even) -> tokens F32 [(h/2)*(w/2), C*4], feature c*4 + ph*2 + pw,
// tokens row-major over the 2x2 patches.
Tensor pack_latent(const Tensor& z);
// The inverse: tokens F32 [(h/2)*(w/2), C*4] -> F32 [C, h, w].
Tensor unpack_latent(const Tensor& x, int64_t h, int64_t w);
// img_ids F32 [(h/2)*(w/2), 3] = (0, patch row, patch col); txt_ids F32 [L, 3] = 0.
Tensor make_img_ids(int64_t h, int64_t w);
Tensor make_txt_ids(int64_t length);

// The model evaluated at one step: packed latent F32 [S, 64] and t -> velocity F32 [S, 64].
using VelocityFn = std::function<Tensor(const Tensor& img, float t)>;
// Called after each step k (0-based) with the latent that entered the step, the prediction, t[k] and t[k+1].
using StepFn = std::function<void(int step, const Tensor& img, const Tensor& pred, float t, float t_next)>;

// BFL denoise(): for k in [0, steps): img += float32(double(t[k+1]) - double(t[k])) * model(img, t[k]),
// the product and the sum each rounded to float32 as torch does. Checks `stop` before each step (throws
// Cancelled). Returns the final latent.
Tensor denoise(const VelocityFn& model, Tensor img, std::span<const float> timesteps, const StepFn& on_step = {},
               std::stop_token stop = {});

// cli.py save_image: x F32 [3, H, W] -> clamp(-1, 1), 127.5 * (x + 1), truncated toward zero -> RGB image.
Image image_from_tensor(const Tensor& x);

}  // namespace flux
