// Layer, RMS and group normalisation: threaded over rows (or groups) with parallel_for, each row run by the
// current ISA's row kernel. The reference:: twins accumulate in double.
#include "kernels/norm.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"

namespace flux::kernels {
namespace {

template <typename Fn>
void for_rows(int64_t rows, int64_t dim, Fn&& fn) {
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(dim, 1));
  if (rows <= grain) {
    if (rows > 0) fn(int64_t{0}, rows);
    return;
  }
  parallel_for(
      rows, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

void check_groups(int64_t channels, int64_t groups) {
  FLUX_CHECK(groups > 0 && channels % groups == 0, "group_norm: channels (", channels,
             ") must be a positive multiple of groups (", groups, ")");
}

}  // namespace

void layer_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, const float* beta, float eps) {
  const auto& k = detail::isa_kernels();
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.layer_norm_row(x + r * dim, y + r * dim, dim, gamma, beta, eps);
  });
}

void rms_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, float eps) {
  const auto& k = detail::isa_kernels();
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.rms_norm_row(x + r * dim, y + r * dim, dim, gamma, eps);
  });
}

void group_norm(const float* x, float* y, int64_t channels, int64_t spatial, int64_t groups, const float* gamma,
                const float* beta, float eps) {
  check_groups(channels, groups);
  const auto& k = detail::isa_kernels();
  const int64_t per_group = channels / groups;
  const int64_t n = per_group * spatial;  // a group is contiguous: [per_group, spatial]
  parallel_for(groups, [&](int64_t gb, int64_t ge) {
    for (int64_t g = gb; g < ge; ++g) {
      const float* xg = x + g * n;
      // Per-channel partial sums, accumulated in double: a group holds up to millions of values.
      double total = 0, total_sq = 0;
      for (int64_t c = 0; c < per_group; ++c) total += k.sum(xg + c * spatial, spatial);
      const float mean = static_cast<float>(total / static_cast<double>(n));
      for (int64_t c = 0; c < per_group; ++c) total_sq += k.sum_sq_dev(xg + c * spatial, spatial, mean);
      const float inv = static_cast<float>(1.0 / std::sqrt(total_sq / static_cast<double>(n) + eps));
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        // y = (x - mean) * inv * gamma + beta = x * a + b
        const float a = inv * (gamma ? gamma[c] : 1.0f);
        const float b = (beta ? beta[c] : 0.0f) - mean * a;
        k.affine(x + c * spatial, y + c * spatial, spatial, a, b);
      }
    }
  });
}

namespace reference {

void layer_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, const float* beta, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double mean = 0, var = 0;
    for (int64_t d = 0; d < dim; ++d) mean += xr[d];
    mean /= static_cast<double>(dim);
    for (int64_t d = 0; d < dim; ++d) var += (xr[d] - mean) * (xr[d] - mean);
    var /= static_cast<double>(dim);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t d = 0; d < dim; ++d) {
      y[r * dim + d] = static_cast<float>((xr[d] - mean) * inv * (gamma ? gamma[d] : 1.0f) + (beta ? beta[d] : 0.0f));
    }
  }
}

void rms_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double ss = 0;
    for (int64_t d = 0; d < dim; ++d) ss += static_cast<double>(xr[d]) * xr[d];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (int64_t d = 0; d < dim; ++d) y[r * dim + d] = static_cast<float>(xr[d] * inv * (gamma ? gamma[d] : 1.0f));
  }
}

void group_norm(const float* x, float* y, int64_t channels, int64_t spatial, int64_t groups, const float* gamma,
                const float* beta, float eps) {
  check_groups(channels, groups);
  const int64_t per_group = channels / groups;
  const int64_t n = per_group * spatial;
  for (int64_t g = 0; g < groups; ++g) {
    const float* xg = x + g * n;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += xg[i];
    mean /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) var += (xg[i] - mean) * (xg[i] - mean);
    var /= static_cast<double>(n);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c)
      for (int64_t s = 0; s < spatial; ++s) {
        y[c * spatial + s] =
            static_cast<float>((x[c * spatial + s] - mean) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f));
      }
  }
}

}  // namespace reference
}  // namespace flux::kernels
