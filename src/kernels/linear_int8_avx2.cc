// AVX2 twins of the int8 row kernels (linear_int8.h) and the int8 peak probe. Reached only when
// cpu_features().avx2. Each kernel gives the scalar twin's bytes: the same products (the bias added by one fused
// multiply-add in both), the same round-to-nearest-even conversion.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/thread_pool.h"
#include "kernels/linear_int8.h"

namespace flux::kernels::detail::avx2 {

float absmax(const float* x, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    m0 = _mm256_max_ps(m0, _mm256_andnot_ps(sign, a));
    m1 = _mm256_max_ps(m1, _mm256_andnot_ps(sign, b));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
  }
  m0 = _mm256_max_ps(m0, m1);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  float m = _mm_cvtss_f32(h);
  bool has_nan = _mm256_movemask_ps(nan) != 0;
  for (; i < n; ++i) {
    m = std::max(m, std::fabs(x[i]));
    has_nan = has_nan || std::isnan(x[i]);
  }
  return has_nan ? std::nanf("") : m;
}

namespace {

// 32 floats * inv, rounded to nearest even and clamped to [-127, 127], as 32 int32 in four registers.
inline void round32(const float* x, __m256 inv, __m256i out[4]) {
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int j = 0; j < 4; ++j) {
    const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), inv), lo), hi);
    out[j] = _mm256_cvtps_epi32(v);
  }
}

// Four registers of int32 in [-128, 127] -> 32 int8 in order.
inline __m256i pack32(const __m256i v[4]) {
  const __m256i a = _mm256_packs_epi32(v[0], v[1]), b = _mm256_packs_epi32(v[2], v[3]);  // lanes interleaved
  const __m256i c = _mm256_packs_epi16(a, b);
  return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace

void quantize_row_u8(const float* x, int64_t n, float inv_scale, uint8_t* q) {
  const __m256 inv = _mm256_set1_ps(inv_scale);
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(-128));  // +128 mod 256: s8 -> u8 with zero point 128
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    round32(x + i, inv, v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_xor_si256(pack32(v), bias));
  }
  scalar::quantize_row_u8(x + i, n - i, inv_scale, q + i);
}

void quantize_row_s8(const float* x, int64_t n, float inv_scale, int8_t* q) {
  const __m256 inv = _mm256_set1_ps(inv_scale);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    round32(x + i, inv, v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), pack32(v));
  }
  scalar::quantize_row_s8(x + i, n - i, inv_scale, q + i);
}

void epilogue_row(const int32_t* acc, int64_t n, float sx, const float* sw, const int32_t* comp, const float* bias,
                  float* y) {
  const __m256 s = _mm256_set1_ps(sx);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j)),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(comp + j)));
    const __m256 scale = _mm256_mul_ps(s, _mm256_loadu_ps(sw + j));
    const __m256 v = bias ? _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), scale, _mm256_loadu_ps(bias + j))
                          : _mm256_mul_ps(_mm256_cvtepi32_ps(a), scale);
    _mm256_storeu_ps(y + j, v);
  }
  scalar::epilogue_row(acc + j, n - j, sx, sw + j, comp + j, bias ? bias + j : nullptr, y + j);
}

double int8_peak_ops() {
  constexpr int64_t kIters = 1 << 20;
  constexpr int kChains = 6;  // independent accumulators: enough to cover the latency, few enough for 16 ymm
  const int threads = hardware_threads();
  auto body = [] {
    __m256i acc[kChains], b[kChains];
    __m256i a = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int c = 0; c < kChains; ++c) {
      acc[c] = _mm256_setzero_si256();
      b[c] = _mm256_set1_epi8(static_cast<char>(c - 3));
    }
    for (int64_t it = 0; it < kIters; ++it) {
      __asm__ volatile("" : "+x"(a));  // opaque: the products are recomputed every iteration
      for (int c = 0; c < kChains; ++c) {
        __m256i t = _mm256_maddubs_epi16(a, b[c]);
        t = _mm256_madd_epi16(t, ones);
        acc[c] = _mm256_add_epi32(acc[c], t);
      }
    }
    __m256i s = acc[0];
    for (int c = 1; c < kChains; ++c) s = _mm256_add_epi32(s, acc[c]);
    return _mm256_extract_epi32(s, 0);
  };
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(
        threads, [&](int64_t a, int64_t b) {
          for (int64_t t = a; t < b; ++t) {
            volatile int sink = body();
            (void)sink;
          }
        },
        1);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(threads) * kIters * kChains * 64.0 / s);  // 32 products of 2 ops each
  }
  return best;
}

}  // namespace flux::kernels::detail::avx2
