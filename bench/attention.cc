// bench_attention: kernels::attention at FLUX's shapes (24 heads x head_dim 128; 1280 tokens = 512x512,
// 4352 = 1024x1024), f32 products vs bf16 products, next to baselines measured in the same run:
//  - the machine's peak: vfmadd231ps and vdpbf16ps in registers on every pool thread;
//  - a ceiling: oneDNN bf16 matmuls of the two products alone, per head, S = Q K^T ([L, 128] x [128, L] -> f32)
//    and O = P V ([L, L] x [L, 128] -> f32), no softmax between them.
// FLOP count of attention: 4 H L^2 D (two products). Usage: bench_attention [reps=3] [lengths...]
// GCC 12 warns on _mm512_undefined_* inside its own reduce intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "kernels/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <dnnl.hpp>
#include <functional>
#include <random>
#include <vector>

#include "base/cpu.h"
#include "bench_util.h"
#include "peak.h"
#include "base/thread_pool.h"
#include "tensor/convert.h"

namespace {

using namespace flux;
using bench::best_seconds;
using bench::random_vector;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// out[m, n] (f32) = a[m, k] (bf16, row-major) b (bf16, [k, n] given as `b_tag`): one oneDNN matmul.
struct OnednnProduct {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::matmul prim;
  dnnl::memory a, b, c;
  OnednnProduct(int64_t m, int64_t k, int64_t n, tag b_tag, void* a_ptr, void* b_ptr, float* c_ptr) {
    const dnnl::memory::desc a_md({m, k}, dt::bf16, tag::ab), b_md({k, n}, dt::bf16, b_tag);
    const dnnl::memory::desc c_md({m, n}, dt::f32, tag::ab);
    prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), eng));
    a = dnnl::memory(a_md, eng, a_ptr);
    b = dnnl::memory(b_md, eng, b_ptr);
    c = dnnl::memory(c_md, eng, c_ptr);
  }
  void run(void* a_ptr, void* b_ptr) {
    a.set_data_handle(a_ptr);
    b.set_data_handle(b_ptr);
    dnnl::stream s(eng);
    prim.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    s.wait();
  }
};

void bench_length(int reps, int64_t len, double bf16_peak) {
  constexpr int64_t H = 24, D = 128;
  const double flop = 4.0 * H * double(len) * double(len) * D;
  // After QKNorm (unit RMS times a learned scale) and RoPE: entries of order 1; FLUX's scale 1/sqrt(128).
  const size_t n = size_t(H * len * D);
  const auto q = random_vector(n, 1, 1.7f), k = random_vector(n, 2, 1.7f), v = random_vector(n, 3, 1.0f);
  std::vector<float> out_f32(n), out_bf16(n);
  kernels::AttentionParams p;
  p.n_heads = H;
  p.len_q = p.len_k = len;
  p.head_dim = D;
  p.scale = 1.0f / std::sqrt(float(D));
  p.bf16 = false;
  const double t_f32 = best_seconds(reps, [&] { kernels::attention(p, q.data(), k.data(), v.data(), out_f32.data()); });
  p.bf16 = true;
  const double t_bf16 =
      best_seconds(reps, [&] { kernels::attention(p, q.data(), k.data(), v.data(), out_bf16.data()); });
  double err = 0, ref = 0;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, double(std::fabs(out_bf16[i] - out_f32[i])));
    ref = std::max(ref, double(std::fabs(out_f32[i])));
  }

  // Ceiling: oneDNN's two products per head on bf16 copies (P random: only the speed matters).
  std::vector<uint16_t> qb(size_t(len * D)), kb(qb.size()), vb(qb.size()), pb(size_t(len * len));
  convert_f32_to_bf16(q.data(), qb.data(), qb.size());
  convert_f32_to_bf16(k.data(), kb.data(), kb.size());
  convert_f32_to_bf16(v.data(), vb.data(), vb.size());
  const auto pr = random_vector(pb.size(), 4, 1.0f);
  convert_f32_to_bf16(pr.data(), pb.data(), pb.size());
  std::vector<float> s(size_t(len * len)), o(size_t(len * D));
  OnednnProduct qk(len, D, len, tag::ba, qb.data(), kb.data(), s.data());  // K [len, D] read as [D, len]
  OnednnProduct pv(len, len, D, tag::ab, pb.data(), vb.data(), o.data());
  const double t_qk = best_seconds(reps, [&] {
    for (int64_t h = 0; h < H; ++h) qk.run(qb.data(), kb.data());
  });
  const double t_pv = best_seconds(reps, [&] {
    for (int64_t h = 0; h < H; ++h) pv.run(pb.data(), vb.data());
  });
  const double t_dnnl = t_qk + t_pv;

  std::printf("\n%lld heads x %lld tokens x head_dim %lld: %.1f GFLOP\n", (long long)H, (long long)len, (long long)D,
              flop * 1e-9);
  std::printf("  %-44s %8.1f ms %7.1f GFLOP/s\n", "kernels::attention f32", t_f32 * 1e3, flop / t_f32 * 1e-9);
  std::printf("  %-44s %8.1f ms %7.1f GFLOP/s   x%.2f of f32", "kernels::attention bf16", t_bf16 * 1e3,
              flop / t_bf16 * 1e-9, t_f32 / t_bf16);
  if (bf16_peak > 0) std::printf(", %.0f%% of bf16 peak", 100.0 * flop / t_bf16 * 1e-9 / bf16_peak);
  std::printf("\n  %-44s %8.1f ms %7.1f GFLOP/s\n", "ceiling: oneDNN bf16 Q K^T per head (f32 out)", t_qk * 1e3,
              flop / 2 / t_qk * 1e-9);
  std::printf("  %-44s %8.1f ms %7.1f GFLOP/s\n", "ceiling: oneDNN bf16 P V per head (f32 out)", t_pv * 1e3,
              flop / 2 / t_pv * 1e-9);
  std::printf("  %-44s %8.1f ms %7.1f GFLOP/s   bf16 attention at x%.2f of it\n", "ceiling: both products",
              t_dnnl * 1e3, flop / t_dnnl * 1e-9, t_dnnl / t_bf16);
  std::printf("  bf16 vs f32 output: max|diff| / max|f32| = %.2e\n", err / ref);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 3;
  std::vector<int64_t> lengths;
  for (int i = 2; i < argc; ++i) lengths.push_back(std::atoll(argv[i]));
  if (lengths.empty()) lengths = {1280, 4352};
  std::printf("cpu: %s; %d threads\n", cpu_features().describe().c_str(), default_pool().n_threads());
  double bf16_peak = 0;
  if (cpu_detected().avx512() && cpu_detected().avx512_bf16) {
    const double f32_peak = bench::f32_peak_gflops();
    bf16_peak = bench::bf16_peak_gflops();
    std::printf("peak (registers only, all threads): f32 FMA %.1f GFLOP/s, bf16 dot %.1f GFLOP/s\n", f32_peak,
                bf16_peak);
  }
  for (int64_t len : lengths) bench_length(reps, len, bf16_peak);
  return 0;
}
