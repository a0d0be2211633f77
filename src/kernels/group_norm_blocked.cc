// group_norm_blocked and upsample_nearest2x_blocked (kernels/conv_layer.h) on a FeatureMap's layout, and the
// scalar row kernels (group_norm_rows.h). Group norm takes three passes over chunks of pixels, each chunk of
// one channel block contiguous: per-lane sums, per-lane sums of squared deviations from the group mean, then
// y = x a + b per lane with SiLU applied to the chunk while it is in cache. Chunk partial sums are float,
// added in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/conv_layer.h"
#include "kernels/group_norm_rows.h"
#include "kernels/internal.h"

namespace flux::kernels {
namespace detail {
namespace scalar {
namespace {

void sum_lanes(const float* x, int64_t n_pix, int64_t block, float* out) {
  for (int64_t l = 0; l < block; ++l) out[l] = 0.0f;
  for (int64_t p = 0; p < n_pix; ++p)
    for (int64_t l = 0; l < block; ++l) out[l] += x[p * block + l];
}

void sum_sq_dev_lanes(const float* x, int64_t n_pix, int64_t block, const float* mean, float* out) {
  for (int64_t l = 0; l < block; ++l) out[l] = 0.0f;
  for (int64_t p = 0; p < n_pix; ++p)
    for (int64_t l = 0; l < block; ++l) {
      const float d = x[p * block + l] - mean[l];
      out[l] += d * d;
    }
}

void affine_lanes(const float* x, float* y, int64_t n_pix, int64_t block, const float* a, const float* b) {
  for (int64_t p = 0; p < n_pix; ++p)
    for (int64_t l = 0; l < block; ++l) y[p * block + l] = x[p * block + l] * a[l] + b[l];
}

}  // namespace

const GroupNormRows group_norm_rows{"scalar", sum_lanes, sum_sq_dev_lanes, affine_lanes};

}  // namespace scalar

const GroupNormRows& group_norm_rows() {
  return isa_level() == IsaLevel::scalar ? scalar::group_norm_rows : avx2::group_norm_rows;
}

}  // namespace detail

namespace {

constexpr int64_t kMaxBlock = 64;
constexpr int64_t kChunkPixels = 1024;

void check_args(int64_t channels, int64_t spatial, int64_t block, int64_t groups) {
  FLUX_CHECK(channels > 0 && spatial > 0 && block > 0 && block <= kMaxBlock, "group_norm_blocked: bad shape ",
             channels, " channels x ", spatial, " pixels, block ", block);
  FLUX_CHECK(groups > 0 && channels % groups == 0, "group_norm_blocked: channels (", channels,
             ") must be a positive multiple of groups (", groups, ")");
}

}  // namespace

void group_norm_blocked(const float* x, float* y, int64_t channels, int64_t spatial, int64_t block, int64_t groups,
                        const float* gamma, const float* beta, float eps, bool silu) {
  check_args(channels, spatial, block, groups);
  const auto& rows = detail::group_norm_rows();
  const auto& isa = detail::isa_kernels();
  const int64_t n_blocks = (channels + block - 1) / block, padded = n_blocks * block;
  const int64_t n_chunks = (spatial + kChunkPixels - 1) / kChunkPixels;
  const int64_t per_group = channels / groups;
  // Task t = (channel block cb, pixel chunk k): pixels [k chunk, min(spatial, (k + 1) chunk)) of block cb.
  auto for_tasks = [&](auto&& fn) {
    parallel_for(n_blocks * n_chunks, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t cb = t / n_chunks, p0 = (t % n_chunks) * kChunkPixels;
        const int64_t n = std::min(spatial, p0 + kChunkPixels) - p0;
        fn(t, cb, (cb * spatial + p0) * block, n);
      }
    });
  };
  std::vector<float> partial(static_cast<size_t>(n_blocks * n_chunks * block));
  // Per-channel totals of the partial sums, then per-group values spread back to the channels' lanes.
  auto group_values = [&](auto&& per_group_value) {
    std::vector<double> channel(static_cast<size_t>(padded), 0.0);
    for (int64_t t = 0; t < n_blocks * n_chunks; ++t)
      for (int64_t l = 0; l < block; ++l)
        channel[static_cast<size_t>((t / n_chunks) * block + l)] += partial[static_cast<size_t>(t * block + l)];
    std::vector<float> lanes(static_cast<size_t>(padded), 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
      double total = 0;
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) total += channel[static_cast<size_t>(c)];
      const float v = per_group_value(total / static_cast<double>(per_group * spatial));
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) lanes[static_cast<size_t>(c)] = v;
    }
    return lanes;
  };

  for_tasks([&](int64_t t, int64_t, int64_t off, int64_t n) {
    rows.sum_lanes(x + off, n, block, partial.data() + t * block);
  });
  const std::vector<float> mean = group_values([](double m) { return static_cast<float>(m); });
  for_tasks([&](int64_t t, int64_t cb, int64_t off, int64_t n) {
    rows.sum_sq_dev_lanes(x + off, n, block, mean.data() + cb * block, partial.data() + t * block);
  });
  const std::vector<float> inv =
      group_values([&](double var) { return static_cast<float>(1.0 / std::sqrt(var + eps)); });
  std::vector<float> a(static_cast<size_t>(padded), 0.0f), b(static_cast<size_t>(padded), 0.0f);
  for (int64_t c = 0; c < channels; ++c) {  // y = (x - mean) inv gamma + beta = x a + b; padding lanes 0
    const auto i = static_cast<size_t>(c);
    a[i] = inv[i] * (gamma ? gamma[c] : 1.0f);
    b[i] = (beta ? beta[c] : 0.0f) - mean[i] * a[i];
  }
  for_tasks([&](int64_t, int64_t cb, int64_t off, int64_t n) {
    rows.affine_lanes(x + off, y + off, n, block, a.data() + cb * block, b.data() + cb * block);
    if (silu) isa.silu(y + off, y + off, n * block);
  });
}

void upsample_nearest2x_blocked(const float* x, float* y, int64_t channels, int64_t height, int64_t width,
                                int64_t block) {
  const int64_t n_blocks = (channels + block - 1) / block, row = width * block;
  parallel_for(
      n_blocks * height,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {  // r = cb height + iy -> output rows 2 iy, 2 iy + 1 of block cb
          const float* src = x + r * row;
          float* dst = y + r * 4 * row;
          for (int64_t i = 0; i < width; ++i) {
            std::memcpy(dst + 2 * i * block, src + i * block, static_cast<size_t>(block) * sizeof(float));
            std::memcpy(dst + (2 * i + 1) * block, src + i * block, static_cast<size_t>(block) * sizeof(float));
          }
          std::memcpy(dst + 2 * row, dst, static_cast<size_t>(2 * row) * sizeof(float));
        }
      },
      4);
}

namespace reference {

void group_norm_blocked(const float* x, float* y, int64_t channels, int64_t spatial, int64_t block, int64_t groups,
                        const float* gamma, const float* beta, float eps, bool silu) {
  check_args(channels, spatial, block, groups);
  const int64_t per_group = channels / groups, n_blocks = (channels + block - 1) / block;
  const auto at = [&](int64_t c, int64_t p) { return ((c / block) * spatial + p) * block + c % block; };
  std::vector<float> out(static_cast<size_t>(n_blocks * block * spatial), 0.0f);  // padding lanes stay 0
  for (int64_t g = 0; g < groups; ++g) {
    double mean = 0, var = 0;
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c)
      for (int64_t p = 0; p < spatial; ++p) mean += x[at(c, p)];
    mean /= static_cast<double>(per_group * spatial);
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c)
      for (int64_t p = 0; p < spatial; ++p) var += (x[at(c, p)] - mean) * (x[at(c, p)] - mean);
    var /= static_cast<double>(per_group * spatial);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c)
      for (int64_t p = 0; p < spatial; ++p) {
        double v = (x[at(c, p)] - mean) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
        if (silu) v = v / (1.0 + std::exp(-v));
        out[static_cast<size_t>(at(c, p))] = static_cast<float>(v);
      }
  }
  std::copy(out.begin(), out.end(), y);
}

}  // namespace reference
}  // namespace flux::kernels
