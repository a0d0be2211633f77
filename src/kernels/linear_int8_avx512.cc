// The AVX512_VNNI int8 peak probe (linear_int8.h): vpdpbusd, u8 x s8 products summed in 32 bits. Reached only
// when cpu_features().avx512_vnni.
// g++ 12 flags the intrinsics' own `_mm512_undefined_epi32()` pass-through as uninitialized once inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "base/thread_pool.h"
#include "kernels/linear_int8.h"

namespace flux::kernels::detail::avx512 {

double int8_vnni_peak_ops() {
  constexpr int64_t kIters = 1 << 20;
  constexpr int kChains = 12;  // vpdpbusd: latency 5, two per cycle on Zen 4 and Ice Lake
  const int threads = hardware_threads();
  auto body = [] {
    __m512i acc[kChains];
    __m512i a = _mm512_set1_epi8(3);
    const __m512i b = _mm512_set1_epi8(-2);
    for (auto& v : acc) v = _mm512_setzero_si512();
    for (int64_t it = 0; it < kIters; ++it) {
      __asm__ volatile("" : "+v"(a));
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
    }
    __m512i s = acc[0];
    for (int c = 1; c < kChains; ++c) s = _mm512_add_epi32(s, acc[c]);
    return _mm512_reduce_add_epi32(s);
  };
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(
        threads,
        [&](int64_t lo, int64_t hi) {
          for (int64_t t = lo; t < hi; ++t) {
            volatile int sink = body();
            (void)sink;
          }
        },
        1);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(threads) * kIters * kChains * 128.0 / s);  // 64 products of 2 ops each
  }
  return best;
}

}  // namespace flux::kernels::detail::avx512
