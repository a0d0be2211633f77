// AVX2 row kernels of group_norm_blocked (group_norm_rows.h): 8 lanes per register, so a pixel of block 8k is k
// registers; block 1 is a contiguous run of one channel, summed 8 values at a time. Other blocks take the
// scalar kernels. Partial sums stay in float over one row (at most a few thousand pixels); the caller adds rows
// in double.
#include <immintrin.h>

#include "kernels/group_norm_rows.h"

namespace flux::kernels::detail::avx2 {
namespace {

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void sum_lanes(const float* x, int64_t n_pix, int64_t block, float* out) {
  if (block == 1) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n_pix; i += 16) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n_pix; ++i) s += x[i];
    out[0] = s;
    return;
  }
  if (block % 8 != 0) return scalar::group_norm_rows.sum_lanes(x, n_pix, block, out);
  for (int64_t l = 0; l < block; l += 8) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 2 <= n_pix; p += 2) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + p * block + l));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + (p + 1) * block + l));
    }
    if (p < n_pix) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + p * block + l));
    _mm256_storeu_ps(out + l, _mm256_add_ps(a0, a1));
  }
}

void sum_sq_dev_lanes(const float* x, int64_t n_pix, int64_t block, const float* mean, float* out) {
  if (block == 1) {
    const __m256 m = _mm256_set1_ps(mean[0]);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n_pix; i += 16) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), m), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m);
      a0 = _mm256_fmadd_ps(d0, d0, a0);
      a1 = _mm256_fmadd_ps(d1, d1, a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n_pix; ++i) s += (x[i] - mean[0]) * (x[i] - mean[0]);
    out[0] = s;
    return;
  }
  if (block % 8 != 0) return scalar::group_norm_rows.sum_sq_dev_lanes(x, n_pix, block, mean, out);
  for (int64_t l = 0; l < block; l += 8) {
    const __m256 m = _mm256_loadu_ps(mean + l);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 2 <= n_pix; p += 2) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + p * block + l), m);
      const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + (p + 1) * block + l), m);
      a0 = _mm256_fmadd_ps(d0, d0, a0);
      a1 = _mm256_fmadd_ps(d1, d1, a1);
    }
    if (p < n_pix) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + p * block + l), m);
      a0 = _mm256_fmadd_ps(d, d, a0);
    }
    _mm256_storeu_ps(out + l, _mm256_add_ps(a0, a1));
  }
}

void affine_lanes(const float* x, float* y, int64_t n_pix, int64_t block, const float* a, const float* b) {
  if (block == 1) {
    const __m256 va = _mm256_set1_ps(a[0]), vb = _mm256_set1_ps(b[0]);
    int64_t i = 0;
    for (; i + 8 <= n_pix; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vb));
    for (; i < n_pix; ++i) y[i] = x[i] * a[0] + b[0];
    return;
  }
  if (block % 8 != 0) return scalar::group_norm_rows.affine_lanes(x, y, n_pix, block, a, b);
  for (int64_t l = 0; l < block; l += 8) {
    const __m256 va = _mm256_loadu_ps(a + l), vb = _mm256_loadu_ps(b + l);
    for (int64_t p = 0; p < n_pix; ++p) {
      const int64_t o = p * block + l;
      _mm256_storeu_ps(y + o, _mm256_fmadd_ps(_mm256_loadu_ps(x + o), va, vb));
    }
  }
}

}  // namespace

const GroupNormRows group_norm_rows{"avx2", sum_lanes, sum_sq_dev_lanes, affine_lanes};

}  // namespace flux::kernels::detail::avx2
