// Scale-to-cover and centre crop in one separable resampling pass (see image_resize.h for the rule).
#include "io/image_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.h"

namespace flux {
namespace {

// Keys' cubic convolution kernel with a = -0.5 (Catmull-Rom), support [-2, 2].
double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// The taps of one output sample: source indices first.. (clamped into [0, n)), normalised weights.
struct Taps {
  std::vector<int> index;
  std::vector<float> weight;
};

// Output samples 0..out-1 along an axis of `n` source pixels, covering the source window [begin, begin + length).
std::vector<Taps> axis_taps(int n, double begin, double length, int out) {
  const double scale = length / out;          // source pixels per output pixel
  const double widen = std::max(scale, 1.0);  // antialiasing: the kernel stretches when shrinking
  const double support = 2.0 * widen;
  std::vector<Taps> taps(static_cast<size_t>(out));
  for (int i = 0; i < out; ++i) {
    const double center = begin + (i + 0.5) * scale;  // in source pixel coordinates (pixel j spans [j, j+1))
    const int first = static_cast<int>(std::floor(center - support));
    const int last = static_cast<int>(std::ceil(center + support));
    Taps& t = taps[static_cast<size_t>(i)];
    double sum = 0;
    std::vector<double> w;
    for (int j = first; j <= last; ++j) {
      const double v = bicubic((j + 0.5 - center) / widen);
      if (v == 0) continue;
      t.index.push_back(std::clamp(j, 0, n - 1));
      w.push_back(v);
      sum += v;
    }
    for (double v : w) t.weight.push_back(static_cast<float>(v / sum));
  }
  return taps;
}

uint8_t to_u8(float v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

}  // namespace

Image resize_cover(const Image& image, int width, int height) {
  FLUX_CHECK(image.width > 0 && image.height > 0 &&
                 image.pixels.size() == static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3,
             "resize: expected an RGB image of at least 1x1, got ", image.width, "x", image.height, " with ",
             image.pixels.size(), " bytes");
  FLUX_CHECK(width > 0 && height > 0, "resize: expected a positive target size, got ", width, "x", height);
  if (image.width == width && image.height == height) return image;
  const int w = image.width, h = image.height;
  // The centred source window of the target's aspect ratio: all of one side, a centred part of the other.
  const double s = std::max(static_cast<double>(width) / w, static_cast<double>(height) / h);
  const double win_w = width / s, win_h = height / s;
  const std::vector<Taps> tx = axis_taps(w, (w - win_w) / 2, win_w, width);
  const std::vector<Taps> ty = axis_taps(h, (h - win_h) / 2, win_h, height);

  // Horizontal pass over the source rows the vertical taps read: [row_lo, row_hi] -> float [rows, width, 3].
  int row_lo = h, row_hi = 0;
  for (const Taps& t : ty)
    for (int r : t.index) row_lo = std::min(row_lo, r), row_hi = std::max(row_hi, r);
  const size_t n_rows = static_cast<size_t>(row_hi - row_lo + 1);
  std::vector<float> mid(n_rows * static_cast<size_t>(width) * 3);
  for (size_t r = 0; r < n_rows; ++r) {
    const uint8_t* src = image.pixels.data() + (static_cast<size_t>(row_lo) + r) * static_cast<size_t>(w) * 3;
    float* dst = mid.data() + r * static_cast<size_t>(width) * 3;
    for (int x = 0; x < width; ++x) {
      const Taps& t = tx[static_cast<size_t>(x)];
      float acc[3] = {0, 0, 0};
      for (size_t k = 0; k < t.index.size(); ++k)
        for (int c = 0; c < 3; ++c) acc[c] += t.weight[k] * src[static_cast<size_t>(t.index[k]) * 3 + c];
      for (int c = 0; c < 3; ++c) dst[static_cast<size_t>(x) * 3 + c] = acc[c];
    }
  }
  // Vertical pass.
  Image out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<size_t>(width) * static_cast<size_t>(height) * 3);
  const size_t stride = static_cast<size_t>(width) * 3;
  std::vector<float> acc(stride);
  for (int y = 0; y < height; ++y) {
    const Taps& t = ty[static_cast<size_t>(y)];
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (size_t k = 0; k < t.index.size(); ++k) {
      const float* row = mid.data() + static_cast<size_t>(t.index[k] - row_lo) * stride;
      const float wk = t.weight[k];
      for (size_t i = 0; i < stride; ++i) acc[i] += wk * row[i];
    }
    uint8_t* dst = out.pixels.data() + static_cast<size_t>(y) * stride;
    for (size_t i = 0; i < stride; ++i) dst[i] = to_u8(acc[i]);
  }
  return out;
}

}  // namespace flux
