#include "pipeline/preview.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "pipeline/sampling.h"

namespace flux {

LatentPreview LatentPreview::fit(const std::function<Tensor(const Tensor&)>& decode, int n_latents) {
  constexpr int kF = 17;  // 16 latent channels + 1 for the bias
  constexpr int64_t kSide = 8;
  std::vector<double> ata(kF * kF, 0.0), atb(kF * 3, 0.0);
  TorchGenerator gen(20240901);
  for (int n = 0; n < n_latents; ++n) {
    const std::vector<float> v = gen.randn(16 * kSide * kSide);
    const Tensor z = Tensor::from_f32(Shape{16, kSide, kSide}, v);
    const Tensor img = decode(z);  // [3, 64, 64]
    FLUX_CHECK(img.ndim() == 3 && img.dim(0) == 3 && img.dim(1) == kSide * 8 && img.dim(2) == kSide * 8,
               "preview fit: the autoencoder returned ", img.describe(), " for a latent [16, 8, 8]");
    const float* px = img.data<float>();
    for (int64_t y = 0; y < kSide; ++y)
      for (int64_t x = 0; x < kSide; ++x) {
        double f[kF];
        for (int k = 0; k < 16; ++k) f[k] = v[static_cast<size_t>((k * kSide + y) * kSide + x)];
        f[16] = 1.0;
        double rgb[3] = {0, 0, 0};
        for (int c = 0; c < 3; ++c) {
          for (int64_t dy = 0; dy < 8; ++dy)
            for (int64_t dx = 0; dx < 8; ++dx) rgb[c] += px[(c * kSide * 8 + y * 8 + dy) * kSide * 8 + x * 8 + dx];
          rgb[c] /= 64.0;
        }
        for (int i = 0; i < kF; ++i) {
          for (int j = 0; j < kF; ++j) ata[i * kF + j] += f[i] * f[j];
          for (int c = 0; c < 3; ++c) atb[i * 3 + c] += f[i] * rgb[c];
        }
      }
  }
  for (int i = 0; i < kF; ++i) ata[i * kF + i] += 1e-3;  // ridge
  // Gaussian elimination with partial pivoting on [ata | atb].
  for (int col = 0; col < kF; ++col) {
    int piv = col;
    for (int r = col + 1; r < kF; ++r)
      if (std::fabs(ata[r * kF + col]) > std::fabs(ata[piv * kF + col])) piv = r;
    if (piv != col) {
      for (int j = 0; j < kF; ++j) std::swap(ata[col * kF + j], ata[piv * kF + j]);
      for (int c = 0; c < 3; ++c) std::swap(atb[col * 3 + c], atb[piv * 3 + c]);
    }
    const double d = ata[col * kF + col];
    for (int r = 0; r < kF; ++r) {
      if (r == col) continue;
      const double m = ata[r * kF + col] / d;
      if (m == 0) continue;
      for (int j = col; j < kF; ++j) ata[r * kF + j] -= m * ata[col * kF + j];
      for (int c = 0; c < 3; ++c) atb[r * 3 + c] -= m * atb[col * 3 + c];
    }
  }
  LatentPreview p;
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < 16; ++k) p.weight[c][k] = static_cast<float>(atb[k * 3 + c] / ata[k * kF + k]);
    p.bias[c] = static_cast<float>(atb[16 * 3 + c] / ata[16 * kF + 16]);
  }
  return p;
}

Image LatentPreview::render(const Tensor& z, int max_side) const {
  FLUX_CHECK(z.dtype() == DType::f32 && z.ndim() == 3 && z.dim(0) == 16,
             "preview: expected a latent f32 [16, h, w], got ", z.describe());
  const int64_t h = z.dim(1), w = z.dim(2);
  const int scale = static_cast<int>(std::clamp<int64_t>(max_side / std::max<int64_t>(h, w), 1, 8));
  Image img;
  img.width = static_cast<int>(w) * scale;
  img.height = static_cast<int>(h) * scale;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  const float* src = z.data<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      uint8_t rgb[3];
      for (int c = 0; c < 3; ++c) {
        float v = bias[c];
        for (int k = 0; k < 16; ++k) v += weight[c][k] * src[(k * h + y) * w + x];
        v = std::isnan(v) ? 0.0f : std::clamp(v, -1.0f, 1.0f);
        rgb[c] = static_cast<uint8_t>(127.5f * (v + 1.0f));
      }
      for (int dy = 0; dy < scale; ++dy)
        for (int dx = 0; dx < scale; ++dx) {
          const size_t o = (static_cast<size_t>(y * scale + dy) * img.width + x * scale + dx) * 3;
          img.pixels[o] = rgb[0];
          img.pixels[o + 1] = rgb[1];
          img.pixels[o + 2] = rgb[2];
        }
    }
  return img;
}

}  // namespace flux
