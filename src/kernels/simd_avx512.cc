// AVX-512 row kernels and GEMM micro-kernel (12 x 32). Compiled with AVX-512 flags; reached only through
// isa_kernels() after the cpu_features() check.
// GCC 12 warns on _mm512_undefined_* inside its own reduce intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <time.h>

#include <cstdint>

#include "kernels/internal.h"

namespace flux::kernels::detail::avx512 {
namespace {

struct V {
  using T = __m512;
  static constexpr int W = 16;
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T zero() { return _mm512_setzero_ps(); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  static T round(T x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static T pow2i(T n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static T zero_if_less(T x, float lo, T r) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(lo), _CMP_GE_OQ), r);
  }
  static T load_dup_pairs(const float* p) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(_mm256_loadu_ps(p)));
  }
  static T swap_pairs(T x) { return _mm512_permute_ps(x, 0xB1); }
  static T fmaddsub(T a, T b, T c) { return _mm512_fmaddsub_ps(a, b, c); }
  static float reduce_add(T v) { return _mm512_reduce_add_ps(v); }
  static float reduce_max(T v) { return _mm512_reduce_max_ps(v); }
};

constexpr const char* kName = "avx512";
constexpr int kMR = 12;
constexpr int kNV = 2;

}  // namespace

#include "kernels/vec_body.h"

}  // namespace flux::kernels::detail::avx512

namespace flux::kernels::detail::avx512 {
namespace {

// Ten independent accumulator chains: enough to cover either instruction's latency.
#define FLUX_TEN(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)

__attribute__((noinline)) float fma_loop(int64_t iterations) {
  const __m512 b = _mm512_set1_ps(1.0001f), c = _mm512_set1_ps(0.9999f);
#define FLUX_DECL(i) __m512 acc##i = _mm512_set1_ps(float(i));
  FLUX_TEN(FLUX_DECL)
  for (int64_t it = 0; it < iterations; ++it) {
#define FLUX_STEP(i) acc##i = _mm512_fmadd_ps(b, c, acc##i);
    FLUX_TEN(FLUX_STEP)
  }
#define FLUX_SUM(i) sum = _mm512_add_ps(sum, acc##i);
  __m512 sum = _mm512_setzero_ps();
  FLUX_TEN(FLUX_SUM)
  return _mm512_reduce_add_ps(sum);
}

__attribute__((noinline)) float dpbf16_loop(int64_t iterations) {
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  FLUX_TEN(FLUX_DECL)
  for (int64_t it = 0; it < iterations; ++it) {
#define FLUX_STEP_BF16(i) acc##i = _mm512_dpbf16_ps(acc##i, b, b);
    FLUX_TEN(FLUX_STEP_BF16)
  }
  __m512 sum = _mm512_setzero_ps();
  FLUX_TEN(FLUX_SUM)
  return _mm512_reduce_add_ps(sum);
}
#undef FLUX_DECL
#undef FLUX_STEP
#undef FLUX_STEP_BF16
#undef FLUX_SUM
#undef FLUX_TEN

double seconds_now() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

}  // namespace

double bf16_dot_speedup() {
  constexpr int64_t kIterations = 20000;  // 200k instructions: well under a millisecond each
  double best_fma = 1e30, best_bf16 = 1e30;
  volatile float sink = 0;
  for (int rep = 0; rep < 7; ++rep) {  // interleaved, best of 7: robust to a busy machine
    double t0 = seconds_now();
    sink = sink + fma_loop(kIterations);
    double t1 = seconds_now();
    sink = sink + dpbf16_loop(kIterations);
    double t2 = seconds_now();
    best_fma = t1 - t0 < best_fma ? t1 - t0 : best_fma;
    best_bf16 = t2 - t1 < best_bf16 ? t2 - t1 : best_bf16;
  }
  // One vdpbf16ps does 64 flops, one vfmadd231ps 32.
  return (64.0 / best_bf16) / (32.0 / best_fma);
}

}  // namespace flux::kernels::detail::avx512
