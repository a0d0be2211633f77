// Sampler pieces of BFL flux/sampling.py. Reference lines: get_noise, prepare, get_schedule (time_shift,
// get_lin_function), denoise, unpack; cli.py for the uint8 conversion.
#include "pipeline/sampling.h"

#include <algorithm>
#include <cmath>

#include "pipeline/pipeline.h"

namespace flux {

std::vector<float> torch_linspace_f32(float start, float end, int n) {
  FLUX_CHECK(n >= 1, "linspace: expected at least 1 point, got ", n);
  std::vector<float> out(static_cast<size_t>(n));
  if (n == 1) {
    out[0] = start;
    return out;
  }
  // ATen RangeFactoriesKernel (linspace): float step, first half from start, second half from end.
  const float step = (end - start) / static_cast<float>(n - 1);
  const int64_t halfway = n / 2;
  for (int64_t i = 0; i < n; ++i) {
    const float v = i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(n - i - 1);
    out[static_cast<size_t>(i)] = v;
  }
  return out;
}

double schedule_mu(int64_t image_seq_len, double base_shift, double max_shift) {
  const double x1 = 256, x2 = 4096;
  const double m = (max_shift - base_shift) / (x2 - x1);
  const double b = base_shift - m * x1;
  return m * static_cast<double>(image_seq_len) + b;
}

std::vector<float> get_schedule(int steps, int64_t image_seq_len, bool shift, double base_shift, double max_shift) {
  FLUX_CHECK(steps >= 1, "schedule: steps must be >= 1, got ", steps);
  std::vector<float> t = torch_linspace_f32(1.0f, 0.0f, steps + 1);
  if (shift) {
    // time_shift(mu, 1.0, t) = exp(mu) / (exp(mu) + (1/t - 1) ** 1) on a float32 tensor: the Python float
    // exp(mu) becomes a float32 scalar, and `scalar / tensor` is reciprocal(tensor) * scalar.
    const float e = static_cast<float>(std::exp(schedule_mu(image_seq_len, base_shift, max_shift)));
    for (float& v : t) {
      const float inv = 1.0f / v;  // t = 0 -> inf -> result 0
      const float denom = e + (inv - 1.0f);
      v = (1.0f / denom) * e;
    }
  }
  return t;
}

Tensor get_noise(int height, int width, uint64_t seed) {
  FLUX_CHECK(height > 0 && width > 0, "noise: size must be positive, got ", width, "x", height);
  const int64_t h = 2 * ((height + 15) / 16), w = 2 * ((width + 15) / 16);
  TorchGenerator gen(seed);
  const std::vector<float> v = gen.randn(16 * h * w);
  return Tensor::from_f32(Shape{16, h, w}, v);
}

Tensor pack_latent(const Tensor& z) {
  FLUX_CHECK(z.dtype() == DType::f32 && z.ndim() == 3, "pack: expected latent f32 [C, h, w], got ", z.describe());
  const int64_t c = z.dim(0), h = z.dim(1), w = z.dim(2);
  FLUX_CHECK(h % 2 == 0 && w % 2 == 0, "pack: latent height and width must be even, got ", z.describe());
  const int64_t hp = h / 2, wp = w / 2;
  Tensor out = Tensor::empty(DType::f32, Shape{hp * wp, c * 4});
  const float* src = z.data<float>();
  float* dst = out.mut<float>();
  // b c (h ph) (w pw) -> b (h w) (c ph pw)
  for (int64_t i = 0; i < hp; ++i)
    for (int64_t j = 0; j < wp; ++j)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t ph = 0; ph < 2; ++ph)
          for (int64_t pw = 0; pw < 2; ++pw)
            dst[(i * wp + j) * c * 4 + ch * 4 + ph * 2 + pw] = src[(ch * h + i * 2 + ph) * w + j * 2 + pw];
  return out;
}

Tensor unpack_latent(const Tensor& x, int64_t h, int64_t w) {
  FLUX_CHECK(x.dtype() == DType::f32 && x.ndim() == 2 && x.dim(1) % 4 == 0,
             "unpack: expected tokens f32 [S, C*4], got ", x.describe());
  FLUX_CHECK(h % 2 == 0 && w % 2 == 0 && x.dim(0) == (h / 2) * (w / 2), "unpack: ", x.describe(), " does not hold a ",
             h, "x", w, " latent (expected ", (h / 2) * (w / 2), " tokens)");
  const int64_t c = x.dim(1) / 4, wp = w / 2;
  Tensor out = Tensor::empty(DType::f32, Shape{c, h, w});
  const float* src = x.data<float>();
  float* dst = out.mut<float>();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < w; ++xx)
        dst[(ch * h + y) * w + xx] = src[((y / 2) * wp + xx / 2) * c * 4 + ch * 4 + (y % 2) * 2 + xx % 2];
  return out;
}

Tensor make_img_ids(int64_t h, int64_t w) {
  const int64_t hp = h / 2, wp = w / 2;
  Tensor ids = Tensor::zeros(DType::f32, Shape{hp * wp, 3});
  float* d = ids.mut<float>();
  for (int64_t i = 0; i < hp; ++i)
    for (int64_t j = 0; j < wp; ++j) {
      d[(i * wp + j) * 3 + 1] = static_cast<float>(i);
      d[(i * wp + j) * 3 + 2] = static_cast<float>(j);
    }
  return ids;
}

Tensor make_txt_ids(int64_t length) { return Tensor::zeros(DType::f32, Shape{length, 3}); }

Tensor denoise(const VelocityFn& model, Tensor img, std::span<const float> timesteps, const StepFn& on_step,
               std::stop_token stop) {
  FLUX_CHECK(timesteps.size() >= 2, "denoise: expected at least 2 timesteps, got ", timesteps.size());
  FLUX_CHECK(img.dtype() == DType::f32, "denoise: expected an f32 latent, got ", img.describe());
  img = img.clone();
  for (size_t k = 0; k + 1 < timesteps.size(); ++k) {
    if (stop.stop_requested()) throw Cancelled();
    const float t = timesteps[k], t_next = timesteps[k + 1];
    const Tensor pred = model(img, t);
    FLUX_CHECK(pred.shape() == img.shape() && pred.dtype() == DType::f32, "denoise: the model returned ",
               pred.describe(), " for a latent ", img.describe());
    if (on_step) on_step(static_cast<int>(k), img, pred, t, t_next);
    // Python floats: t_prev - t_curr in double, then a float32 scalar times the float32 tensor.
    const float dt = static_cast<float>(static_cast<double>(t_next) - static_cast<double>(t));
    float* x = img.mut<float>();
    const float* v = pred.data<float>();
    for (int64_t i = 0, n = img.numel(); i < n; ++i) {
      const float step = dt * v[i];
      x[i] = x[i] + step;
    }
  }
  return img;
}

Image image_from_tensor(const Tensor& x) {
  FLUX_CHECK(x.dtype() == DType::f32 && x.ndim() == 3 && x.dim(0) == 3, "image: expected f32 [3, H, W], got ",
             x.describe());
  const int64_t h = x.dim(1), w = x.dim(2);
  Image img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.pixels.resize(static_cast<size_t>(h * w * 3));
  const float* src = x.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < h * w; ++i) {
      float v = src[c * h * w + i];
      v = std::isnan(v) ? 0.0f : std::clamp(v, -1.0f, 1.0f);  // torch clamp keeps NaN; .byte() of NaN is UB
      const float scaled = 127.5f * (v + 1.0f);
      img.pixels[static_cast<size_t>(i * 3 + c)] = static_cast<uint8_t>(scaled);  // truncation, like .byte()
    }
  return img;
}

}  // namespace flux
