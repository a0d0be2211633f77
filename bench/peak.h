// The machine's peaks, probed here: register-only loops of FMAs (f32) or vdpbf16ps (bf16 dot products) on every
// pool thread at once, 16 independent accumulators (enough for either instruction's latency). Benchmarks print
// their rates as a share of these.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "base/cpu.h"
#include "base/thread_pool.h"
#include "bench_util.h"

namespace flux::bench {

__attribute__((target("avx2,fma"))) inline float fma_loop_avx2(int64_t n) {
  __m256 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 b = _mm256_set1_ps(1.0001f), c = _mm256_set1_ps(0.9999f);
  for (int64_t it = 0; it < n; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm256_fmadd_ps(b, c, acc[i]);
  for (int i = 1; i < 16; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  float out[8];
  _mm256_storeu_ps(out, acc[0]);
  return out[0];
}

__attribute__((target("avx512f"))) inline float fma_loop_avx512(int64_t n) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 b = _mm512_set1_ps(1.0001f), c = _mm512_set1_ps(0.9999f);
  for (int64_t it = 0; it < n; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(b, c, acc[i]);
  for (int i = 1; i < 16; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  float out[16];  // (g++ 12 flags _mm512_reduce_add_ps's own temporaries as uninitialized)
  _mm512_storeu_ps(out, acc[0]);
  return out[0];
}

__attribute__((target("avx512f,avx512bf16"))) inline float dpbf16_loop(int64_t n) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80);
  for (int64_t it = 0; it < n; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], b, b);
  for (int i = 1; i < 16; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  float out[16];  // (g++ 12 flags _mm512_reduce_add_ps's own temporaries as uninitialized)
  _mm512_storeu_ps(out, acc[0]);
  return out[0];
}

// GFLOP/s of `loop` on every pool thread at once (flop_per_instr per instruction, 16 per iteration).
inline double loop_peak_gflops(float (*loop)(int64_t), double flop_per_instr) {
  const int threads = default_pool().n_threads();
  constexpr int64_t kIterations = 2'000'000;
  std::vector<float> sinks(size_t(threads), 0.0f);
  const double t = best_seconds(3, [&] {
    parallel_for(threads, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sinks[size_t(i)] += loop(kIterations);
    });
  });
  volatile float sink = 0;
  for (float x : sinks) sink = sink + x;
  return double(threads) * kIterations * 16 * flop_per_instr / t * 1e-9;
}

// f32 FMA peak (AVX-512, else AVX2; 0 without either), in GFLOP/s.
inline double f32_peak_gflops() {
  if (cpu_detected().avx512()) return loop_peak_gflops(fma_loop_avx512, 32);
  if (cpu_detected().avx2) return loop_peak_gflops(fma_loop_avx2, 16);
  return 0;
}

// bf16 dot-product peak (vdpbf16ps, 64 flops per instruction; 0 without AVX512_BF16), in GFLOP/s.
inline double bf16_peak_gflops() {
  return cpu_detected().avx512() && cpu_detected().avx512_bf16 ? loop_peak_gflops(dpbf16_loop, 64) : 0;
}

}  // namespace flux::bench
