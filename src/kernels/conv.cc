// conv2d: oneDNN's convolution (conv_onednn.cc) by default; here the in-house path, im2col + the threaded
// GEMM: y[Cout, P] = W[Cout, Cin*kh*kw] col[Cin*kh*kw, P], with the output pixels P taken in chunks so the col
// buffer stays a few MB (a 1x1, stride-1, unpadded convolution multiplies x directly). It runs under
// FLUX_CPU=scalar and the tests check it on every ISA. Also nearest-neighbour 2x upsampling.
#include "kernels/conv.h"

#include <algorithm>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace flux::kernels {
namespace {

void check(const Conv2dParams& p) {
  FLUX_CHECK(p.in_channels > 0 && p.out_channels > 0 && p.height > 0 && p.width > 0,
             "conv2d: channels and size must be positive, got in ", p.in_channels, " out ", p.out_channels, " ",
             p.height, "x", p.width);
  FLUX_CHECK(p.kernel > 0 && p.stride > 0, "conv2d: kernel and stride must be positive, got ", p.kernel, ", ",
             p.stride);
  FLUX_CHECK(p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 && p.pad_right >= 0,
             "conv2d: padding must be >= 0");
  FLUX_CHECK(p.out_height() > 0 && p.out_width() > 0, "conv2d: kernel ", p.kernel, " larger than padded input ",
             p.height, "x", p.width);
}

// col[r, p - p0] for r = (ci, ky, kx) and output pixels p in [p0, p1), walked one output row at a time so
// the stride-1 case is a copy of a contiguous input span between zero borders.
void im2col(const Conv2dParams& p, const float* x, int64_t p0, int64_t p1, float* col) {
  const int64_t kk = p.kernel * p.kernel, ow = p.out_width(), n = p1 - p0;
  parallel_for(
      p.in_channels * kk,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t ci = r / kk, ky = (r % kk) / p.kernel, kx = r % p.kernel;
          const float* xc = x + ci * p.height * p.width;
          float* dst = col + r * n;
          for (int64_t q = p0; q < p1;) {
            const int64_t oy = q / ow, ox0 = q % ow, ox1 = std::min(ow, ox0 + (p1 - q));  // this output row's span
            const int64_t iy = oy * p.stride - p.pad_top + ky;
            float* out = dst + (q - p0);
            if (iy < 0 || iy >= p.height) {
              std::fill(out, out + (ox1 - ox0), 0.0f);
            } else {
              const float* src = xc + iy * p.width;
              for (int64_t ox = ox0; ox < ox1; ++ox) {
                const int64_t ix = ox * p.stride - p.pad_left + kx;
                out[ox - ox0] = (ix >= 0 && ix < p.width) ? src[ix] : 0.0f;
              }
            }
            q += ox1 - ox0;
          }
        }
      },
      4);
}

}  // namespace

void conv2d(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  check(p);
  if (isa_level() == IsaLevel::scalar) {
    detail::conv2d_im2col(p, x, w, bias, y);
  } else {
    detail::conv2d_onednn(p, x, w, bias, y);
  }
}

void detail::conv2d_im2col(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const int64_t k = p.in_channels * p.kernel * p.kernel;
  const int64_t n_pix = p.out_height() * p.out_width();
  const bool direct =
      p.kernel == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0;
  if (direct) {
    detail::gemm_threaded(p.out_channels, n_pix, k, w, k, x, n_pix, false, nullptr, y, n_pix);
  } else {
    // Chunk of output pixels: about 4M floats of col, a multiple of 512 (the GEMM's column tile).
    const int64_t chunk = std::max<int64_t>(512, (int64_t{1} << 22) / k / 512 * 512);
    std::vector<float> col(static_cast<size_t>(k * std::min(chunk, n_pix)));
    for (int64_t p0 = 0; p0 < n_pix; p0 += chunk) {
      const int64_t p1 = std::min(n_pix, p0 + chunk);
      im2col(p, x, p0, p1, col.data());
      detail::gemm_threaded(p.out_channels, p1 - p0, k, w, k, col.data(), p1 - p0, false, nullptr, y + p0, n_pix);
    }
  }
  if (bias != nullptr) {
    const auto& isa = detail::isa_kernels();
    parallel_for(p.out_channels, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) isa.affine(y + c * n_pix, y + c * n_pix, n_pix, 1.0f, bias[c]);
    });
  }
}

void upsample_nearest2x(const float* x, float* y, int64_t channels, int64_t height, int64_t width) {
  parallel_for(
      channels * height,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* src = x + r * width;
          float* dst = y + r * 4 * width;  // rows 2r and 2r+1 of the output, each 2 width long
          for (int64_t i = 0; i < width; ++i) dst[2 * i] = dst[2 * i + 1] = src[i];
          std::copy(dst, dst + 2 * width, dst + 2 * width);
        }
      },
      16);
}

namespace reference {

void conv2d(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  check(p);
  const int64_t oh = p.out_height(), ow = p.out_width();
  for (int64_t co = 0; co < p.out_channels; ++co)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        double s = bias ? bias[co] : 0.0;
        for (int64_t ci = 0; ci < p.in_channels; ++ci)
          for (int64_t ky = 0; ky < p.kernel; ++ky)
            for (int64_t kx = 0; kx < p.kernel; ++kx) {
              const int64_t iy = oy * p.stride - p.pad_top + ky, ix = ox * p.stride - p.pad_left + kx;
              if (iy < 0 || iy >= p.height || ix < 0 || ix >= p.width) continue;
              s += static_cast<double>(x[(ci * p.height + iy) * p.width + ix]) *
                   w[((co * p.in_channels + ci) * p.kernel + ky) * p.kernel + kx];
            }
        y[(co * oh + oy) * ow + ox] = static_cast<float>(s);
      }
}

void upsample_nearest2x(const float* x, float* y, int64_t channels, int64_t height, int64_t width) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < 2 * height; ++i)
      for (int64_t j = 0; j < 2 * width; ++j)
        y[(c * 2 * height + i) * 2 * width + j] = x[(c * height + i / 2) * width + j / 2];
}

}  // namespace reference
}  // namespace flux::kernels
