// bench_matmul: the FLUX linear layers (M = 1280 tokens) through kernels::Linear (f32 and bf16 weights,
// prepacked and per-call), our own matmul_f32, and a plain oneDNN matmul written here as the baseline, all in
// the same run; then one FLUX-sized attention. Each figure: warm-up, then the best of a few repetitions.
// Usage: bench_matmul [reps [attention|quant [two-pass]|int8|step [M... KxN...]|tiles]]   (default 2 repetitions;
// "attention" runs only the attention line; "quant" only the stored-form rows: bf16, f16, f8_e4m3, q8_0 and q4_K
// Linears, prepacked and per call, against bf16 prepacked, on the FLUX shapes at M = 1280 and 4608 and the T5-XXL
// shapes at M = 256 and 512; "two-pass" adds per-call rows packed the old way, widen then oneDNN's reorder; "int8" only
// the int8 rows: Linear at Precision::int8, prepacked and per call, against oneDNN f32 (and bf16) prepacked on the same
// FLUX and T5 shapes, with the machine's int8 peak probed at start; "step" the products of whole passes: one
// FLUX denoising step at 512x512 (19 double blocks, image stream M = 1024 and text M = 256, and 38 single
// blocks, M = 1280) and the T5-XXL encode at 256 and 512 tokens, each distinct shape timed once per stored form
// per call and as bf16 prepacked, summed with its count per pass ("step M... KxN..." the same rounds on just
// those products); "stored [M...] [KxN...] [widened]" the stored-form GEMM against bf16 prepacked,
// bench_stored_gemm; "tiles" its dequantize pass per form, bench_tiles)
#include "kernels/matmul.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <dnnl.hpp>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/aligned_buffer.h"
#include "base/cpu.h"
#include "base/thread_pool.h"
#include "bench_util.h"
#include "kernels/attention.h"
#include "kernels/gemm_stored.h"
#include "kernels/internal.h"
#include "kernels/linear_int8.h"
#include "peak.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "tensor/tensor.h"

namespace {

using namespace flux;
using bench::best_seconds;
using bench::random_vector;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// A plain oneDNN matmul y = x W^T + b, weights reordered once into the preferred layout: the baseline.
struct OnednnMatmul {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  dnnl::memory src, wei, bias, dst;

  OnednnMatmul(dt type, int64_t m, int64_t k, int64_t n, const void* x, const void* w_nk, const float* b, float* y) {
    const dnnl::memory::desc src_md({m, k}, type, tag::ab), w_any({k, n}, type, tag::any);
    const dnnl::memory::desc bias_md({1, n}, dt::f32, tag::ab), dst_md({m, n}, dt::f32, tag::ab);
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, w_any, bias_md, dst_md), eng);
    prim = dnnl::matmul(pd);
    src = dnnl::memory(src_md, eng, const_cast<void*>(x));
    dnnl::memory w_plain({{k, n}, type, tag::ba}, eng, const_cast<void*>(w_nk));
    wei = dnnl::memory(pd.weights_desc(), eng);
    dnnl::stream s(eng);
    dnnl::reorder(w_plain, wei).execute(s, w_plain, wei);
    s.wait();
    bias = dnnl::memory(bias_md, eng, const_cast<float*>(b));
    dst = dnnl::memory(dst_md, eng, y);
  }
  void run() {
    dnnl::stream s(eng);
    prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    s.wait();
  }
};

void row(const char* name, double flop, double seconds, double baseline_seconds) {
  std::printf("  %-34s %9.1f ms %8.1f GFLOP/s   x%.2f of oneDNN\n", name, seconds * 1e3, flop / seconds * 1e-9,
              baseline_seconds / seconds);
}

// f8_e4m3 bytes spread over every finite value (there is no f32 -> f8 conversion to make them from floats).
Tensor random_f8(int64_t n, int64_t k) {
  Tensor w = Tensor::empty(DType::f8_e4m3, {n, k});
  auto* p = static_cast<uint8_t*>(w.raw_mut());
  std::mt19937 rng(7);
  for (int64_t i = 0; i < n * k; ++i) {
    const auto b = static_cast<uint8_t>(rng());
    p[i] = (b & 0x7f) == 0x7f ? uint8_t{0x3c} : b;  // 0x7f / 0xff are NaN
  }
  return w;
}

// Each stored form of one weight (bf16, f16, f8_e4m3, and q8_0, q4_K quantized as sd.cpp does), prepacked and
// per call, against the bf16 weight prepacked: the criterion for per_call weights (issue: >= 0.95x of it at
// FLUX sizes). With `two_pass`, per_call rows are repeated with the two-pass packing (widen, oneDNN reorder).
void bench_stored_forms(int reps, int64_t m, int64_t k, int64_t n, const char* what, bool two_pass) {
  const double flop = 2.0 * double(m) * double(k) * double(n);
  std::printf("\n%s: %lld x %lld x %lld (M x K x N), %.1f GFLOP\n", what, static_cast<long long>(m),
              static_cast<long long>(k), static_cast<long long>(n), flop * 1e-9);
  const std::vector<float> x = random_vector(size_t(m * k), 1);
  const Tensor w32 = Tensor::from_f32({n, k}, random_vector(size_t(n * k), 2));
  const Tensor bias = Tensor::from_f32({n}, random_vector(size_t(n), 3));
  const auto ones = unit_importance(k);
  const std::pair<const char*, Tensor> weights[] = {{"bf16", w32.to(DType::bf16)},
                                                    {"f16", w32.to(DType::f16)},
                                                    {"f8_e4m3", random_f8(n, k)},
                                                    {"q8_0", quantize(w32, DType::q8_0, ones.data())},
                                                    {"q4_K", quantize(w32, DType::q4_K, ones.data())}};
  std::vector<float> y(size_t(m * n));
  double base = 0;  // bf16 prepacked
  auto run = [&](const char* name, kernels::WeightMode mode, bool direct, const Tensor& w) {
    kernels::detail::set_linear_direct_pack(direct);
    kernels::Linear lin(w, bias, mode);
    kernels::detail::set_linear_direct_pack(true);
    const double t = best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); });
    if (base == 0) base = t;
    const char* mode_name = mode == kernels::WeightMode::prepacked ? "prepacked"
                            : direct                               ? "per_call"
                                                                   : "per_call 2-pass";
    std::printf("  Linear %-7s %-15s %9.1f ms %8.1f GFLOP/s   x%.3f of bf16 prepacked\n", name, mode_name, t * 1e3,
                flop / t * 1e-9, base / t);
  };
  for (const auto& [name, w] : weights) run(name, kernels::WeightMode::prepacked, true, w);
  for (const auto& [name, w] : weights) run(name, kernels::WeightMode::per_call, true, w);
  if (two_pass) {
    for (const auto& [name, w] : weights) run(name, kernels::WeightMode::per_call, false, w);
  }
}

// The FLUX linear layers at the token counts of 512^2 (1280) and 1024^2 (4608) images, then the T5-XXL
// encoder's (d_model 4096, d_ff 10240, gated GELU) at 256 and 512 tokens.
void bench_quantized(int reps, bool two_pass) {
  std::printf("\nstored weight forms: Linear per form and mode, GFLOP/s and ratio to the bf16 weight prepacked\n");
  for (int64_t m : {int64_t{1280}, int64_t{4608}}) {
    bench_stored_forms(reps, m, 3072, 3072, "FLUX", two_pass);
    bench_stored_forms(reps, m, 3072, 12288, "FLUX", two_pass);
  }
  for (int64_t m : {int64_t{256}, int64_t{512}}) {
    bench_stored_forms(reps, m, 4096, 4096, "T5 q,k,v,o", two_pass);
    bench_stored_forms(reps, m, 4096, 10240, "T5 wi_0, wi_1", two_pass);
    bench_stored_forms(reps, m, 10240, 4096, "T5 wo", two_pass);
  }
}

// One pass's products: a shape and how many times the pass runs it.
struct PassShape {
  int64_t m, k, n, count;
};

// The products of a pass (FLUX step, T5 encode) per stored form per call, against the bf16 weight prepacked:
// each shape timed once per form (best of reps interleaved rounds), weighted by its count. The criterion: the
// stored-form path costs at most 10% per step against prepacked bf16 (only the products differ between the modes, so
// the whole step's ratio is nearer 1 than this products-only one).
void bench_pass(int reps, const char* what, const std::vector<PassShape>& shapes) {
  const char* forms[] = {"bf16", "f16", "f8_e4m3", "q8_0", "q4_K"};
  double base = 0, flop = 0;
  std::vector<double> per_call(std::size(forms), 0.0);
  for (const PassShape& sh : shapes) {
    const std::vector<float> x = random_vector(size_t(sh.m * sh.k), 1);
    const Tensor w32 = Tensor::from_f32({sh.n, sh.k}, random_vector(size_t(sh.n * sh.k), 2));
    const Tensor bias = Tensor::from_f32({sh.n}, random_vector(size_t(sh.n), 3));
    const auto ones = unit_importance(sh.k);
    std::vector<float> y(size_t(sh.m * sh.n));
    const Tensor w16 = w32.to(DType::bf16);
    // Every Linear first, then rounds that time each once, in turn: a slow spell of the host (the other
    // hyperthread busy) then falls on all of them alike instead of on one form's repetitions.
    std::vector<kernels::Linear> lins;
    lins.emplace_back(w16, bias, kernels::WeightMode::prepacked);
    for (const std::string name : forms) {
      const Tensor w = name == "bf16"      ? w16
                       : name == "f16"     ? w32.to(DType::f16)
                       : name == "f8_e4m3" ? random_f8(sh.n, sh.k)
                       : name == "q8_0"    ? quantize(w32, DType::q8_0, ones.data())
                                           : quantize(w32, DType::q4_K, ones.data());
      lins.emplace_back(w, bias, kernels::WeightMode::per_call);
    }
    std::vector<double> best(lins.size(), 1e30);
    for (int r = 0; r <= reps; ++r) {  // round 0 warms up
      for (size_t i = 0; i < lins.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        lins[i].forward(x.data(), sh.m, y.data());
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) best[i] = std::min(best[i], t);
      }
    }
    const double t_base = best[0];
    base += double(sh.count) * t_base;
    flop += double(sh.count) * 2.0 * double(sh.m) * double(sh.k) * double(sh.n);
    std::printf("  %5lld x %5lld x %5lld x%-3lld bf16 prepacked %7.1f ms, per call:", static_cast<long long>(sh.m),
                static_cast<long long>(sh.k), static_cast<long long>(sh.n), static_cast<long long>(sh.count),
                t_base * 1e3);
    for (size_t f = 0; f < std::size(forms); ++f) {
      per_call[f] += double(sh.count) * best[f + 1];
      std::printf(" %s x%.3f", forms[f], t_base / best[f + 1]);
    }
    std::printf("\n");
  }
  std::printf("%s: products %.1f GFLOP; bf16 prepacked %.2f s (%.1f GFLOP/s)\n", what, flop * 1e-9, base,
              flop / base * 1e-9);
  for (size_t f = 0; f < std::size(forms); ++f) {
    std::printf("  per call %-8s %7.2f s   x%.3f of bf16 prepacked (%+.1f%% time)\n", forms[f], per_call[f],
                base / per_call[f], 100.0 * (per_call[f] / base - 1.0));
  }
}

void bench_steps(int reps) {
  std::vector<PassShape> flux;
  for (int64_t m : {int64_t{1024}, int64_t{256}}) {  // a double block's image and text streams
    flux.push_back({m, 3072, 9216, 19});
    flux.push_back({m, 3072, 3072, 19});
    flux.push_back({m, 3072, 12288, 19});
    flux.push_back({m, 12288, 3072, 19});
  }
  flux.push_back({1280, 3072, 21504, 38});  // single blocks: linear1 (qkv + mlp), linear2
  flux.push_back({1280, 15360, 3072, 38});
  std::printf("\nFLUX step 512x512 (19 double + 38 single blocks; modulation products left out)\n");
  bench_pass(reps, "FLUX step 512x512", flux);
  for (int64_t m : {int64_t{256}, int64_t{512}}) {
    const std::vector<PassShape> t5{{m, 4096, 4096, 24 * 4}, {m, 4096, 10240, 24 * 2}, {m, 10240, 4096, 24}};
    std::printf("\nT5-XXL encode, %lld tokens (24 layers)\n", static_cast<long long>(m));
    bench_pass(reps, m == 256 ? "T5 encode 256 tokens" : "T5 encode 512 tokens", t5);
  }
}

// The int8 multiply-accumulate peak of this machine (ops/s): vpdpbusd with AVX512_VNNI, else the AVX2
// vpmaddubsw + vpmaddwd + vpaddd sequence oneDNN's int8 gemm runs.
double int8_peak() {
  if (cpu_features().avx512_vnni) return kernels::detail::avx512::int8_vnni_peak_ops();
  return kernels::detail::avx2::int8_peak_ops();
}

// One shape: oneDNN f32 (the baseline) and bf16 (where the CPU has it) prepacked, then Linear int8 prepacked
// and per call (from a bf16 weight, as FLUX ships), with GOP/s, % of the int8 peak and the ratio to f32.
void bench_int8_shape(int reps, double peak, int64_t m, int64_t k, int64_t n, const char* what) {
  const double ops = 2.0 * double(m) * double(k) * double(n);
  std::printf("\n%s: %lld x %lld x %lld (M x K x N), %.1f GOP\n", what, static_cast<long long>(m),
              static_cast<long long>(k), static_cast<long long>(n), ops * 1e-9);
  const std::vector<float> x = random_vector(size_t(m * k), 1), w = random_vector(size_t(n * k), 2),
                           b = random_vector(size_t(n), 3);
  const Tensor w32 = Tensor::from_f32({n, k}, w), bias = Tensor::from_f32({n}, b);
  const Tensor w16 = w32.to(DType::bf16);
  std::vector<float> y(size_t(m * n));
  auto line = [&](const char* name, double t, double base) {
    std::printf("  %-30s %9.1f ms %8.1f GOP/s %5.1f%% of int8 peak   x%.2f of oneDNN f32\n", name, t * 1e3,
                ops / t * 1e-9, 100.0 * ops / t / peak, base / t);
  };
  double base = 0;
  {
    OnednnMatmul ref(dt::f32, m, k, n, x.data(), w.data(), b.data(), y.data());
    base = best_seconds(reps, [&] { ref.run(); });
    line("oneDNN f32 prepacked", base, base);
  }
  if (cpu_features().avx512_bf16) {
    std::vector<uint16_t> xb(x.size());
    convert_f32_to_bf16(x.data(), xb.data(), x.size());
    OnednnMatmul ref(dt::bf16, m, k, n, xb.data(), data_u16(w16), b.data(), y.data());
    line("oneDNN bf16 prepacked", best_seconds(reps, [&] { ref.run(); }), base);
  }
  for (auto mode : {kernels::WeightMode::prepacked, kernels::WeightMode::per_call}) {
    const kernels::Linear lin(w16, bias, mode, kernels::Precision::int8);
    const double t = best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); });
    line(mode == kernels::WeightMode::prepacked ? "Linear int8 prepacked" : "Linear int8 per_call (bf16 w.)", t, base);
  }
}

void bench_int8(int reps) {
  const double peak = int8_peak();
  std::printf("\nint8 products: peak %.1f GOP/s (%s, %d threads, probed)\n", peak * 1e-9,
              cpu_features().avx512_vnni ? "vpdpbusd" : "vpmaddubsw + vpmaddwd", hardware_threads());
  for (int64_t m : {int64_t{1280}, int64_t{4608}}) {
    bench_int8_shape(reps, peak, m, 3072, 3072, "FLUX");
    bench_int8_shape(reps, peak, m, 3072, 9216, "FLUX");
    bench_int8_shape(reps, peak, m, 3072, 12288, "FLUX");
    bench_int8_shape(reps, peak, m, 12288, 3072, "FLUX");
  }
  for (int64_t m : {int64_t{256}, int64_t{512}}) {
    bench_int8_shape(reps, peak, m, 4096, 10240, "T5 wi_0, wi_1");
    bench_int8_shape(reps, peak, m, 10240, 4096, "T5 wo");
  }
}

}  // namespace

// Wall and process CPU seconds of fn, each the best of `reps` runs after a warm-up. CPU time (all threads) leaves
// out the time other processes hold the cores, so its ratios stay readable on a shared machine.
struct WallCpu {
  double wall = 1e30, cpu = 1e30;
};
WallCpu best_wall_cpu(int reps, const std::function<void()>& fn) {
  auto cpu_now = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
  };
  fn();
  WallCpu best;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_now();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best.wall = std::min(best.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    best.cpu = std::min(best.cpu, cpu_now() - c0);
  }
  return best;
}

// The stored-form GEMM per weight form, per call, against the bf16 weight prepacked (oneDNN): GFLOP/s, % of
// the bf16 dot peak and the ratio, by wall time and by CPU time. "bf16 via stored GEMM" runs the kernel on a bf16
// weight (x already bf16): its tiles are plain copies, so that row is the microkernel's own rate. "bf16 per_call"
// is Linear's per_call bf16 weight (that kernel, x converted from f32 included), "bf16 per_call oneDNN" the path it
// replaced (oneDNN reading the stored rows). Linear's per_call path takes this kernel at every M; "blocked" rows (from
// M = 2048) time the path it replaced there (panels packed blocked for oneDNN, linear.cc's kBlockedFromM), "widened"
// rows (with `widened`) the one it replaced below: panels widened to bf16, then oneDNN.
struct StoredBenchShape {
  int64_t k, n;
};
void bench_stored_gemm(int reps, const std::vector<int64_t>& ms, std::vector<StoredBenchShape> shapes, bool widened) {
  // vdpbf16ps in registers on every thread (bench/peak.h). Half the vpdpbusd rate was right on Zen 4 only: on
  // Zen 5 it put these products at 105-400% of "peak".
  const double peak = bench::bf16_peak_gflops() * 1e9;
  std::printf("bf16 dot peak (vdpbf16ps in registers, all threads): %.1f GFLOP/s\n", peak * 1e-9);
  if (shapes.empty()) {  // FLUX (double and single blocks), then T5-XXL
    shapes = {{3072, 3072},  {3072, 12288}, {12288, 3072}, {3072, 9216},
              {15360, 3072}, {4096, 4096},  {4096, 10240}, {10240, 4096}};
  }
  for (const StoredBenchShape& s : shapes) {
    const std::vector<float> w_values = random_vector(size_t(s.n * s.k), 2);
    const Tensor w32 = Tensor::from_f32({s.n, s.k}, w_values);
    const Tensor bias = Tensor::from_f32({s.n}, random_vector(size_t(s.n), 3));
    const auto ones = unit_importance(s.k);
    const Tensor w16 = w32.to(DType::bf16);
    const std::pair<const char*, Tensor> forms[] = {{"q8_0", quantize(w32, DType::q8_0, ones.data())},
                                                    {"q4_K", quantize(w32, DType::q4_K, ones.data())},
                                                    {"f8_e4m3", random_f8(s.n, s.k)},
                                                    {"f16", w32.to(DType::f16)}};
    for (int64_t m : ms) {
      const double flop = 2.0 * double(m) * double(s.k) * double(s.n);
      std::printf("\n%lld x %lld x %lld (M x K x N), %.1f GFLOP\n", static_cast<long long>(m),
                  static_cast<long long>(s.k), static_cast<long long>(s.n), flop * 1e-9);
      const std::vector<float> x = random_vector(size_t(m * s.k), 1);
      std::vector<float> y(size_t(m * s.n));
      WallCpu base;
      auto line = [&](const std::string& name, WallCpu t) {
        if (base.wall == 1e30) base = t;
        std::printf("  %-30s %8.1f ms %7.1f GFLOP/s %5.1f%% of peak   x%.3f of bf16 prepacked (cpu time x%.3f)\n",
                    name.c_str(), t.wall * 1e3, flop / t.wall * 1e-9, peak > 0 ? 100.0 * flop / t.wall / peak : 0.0,
                    base.wall / t.wall, base.cpu / t.cpu);
      };
      auto time = [&](const Tensor& w, kernels::WeightMode mode) {
        const kernels::Linear lin(w, bias, mode);
        return best_wall_cpu(reps, [&] { lin.forward(x.data(), m, y.data()); });
      };
      line("bf16 prepacked (oneDNN)", time(w16, kernels::WeightMode::prepacked));
      {
        std::vector<uint16_t> xb(x.size());
        convert_f32_to_bf16(x.data(), xb.data(), xb.size());
        kernels::detail::StoredGemm g;
        g.dtype = DType::bf16, g.w = w16.raw(), g.n = s.n, g.k = s.k;
        g.x = xb.data(), g.m = m, g.bias = bias.data<float>(), g.y = y.data();
        line("bf16 via stored GEMM", best_wall_cpu(reps, [&] { kernels::detail::gemm_stored_bf16(g); }));
      }
      line("bf16 per_call", time(w16, kernels::WeightMode::per_call));
      kernels::detail::set_linear_stored_gemm(false);
      line("bf16 per_call oneDNN", time(w16, kernels::WeightMode::per_call));
      kernels::detail::set_linear_stored_gemm(true);
      for (const auto& [name, w] : forms) {
        line(std::string(name) + " per_call stored GEMM", time(w, kernels::WeightMode::per_call));
        kernels::detail::set_linear_stored_gemm(false);
        if (m >= 2048) line(std::string(name) + " per_call blocked", time(w, kernels::WeightMode::per_call));
        if (widened) {
          kernels::detail::set_linear_blocked_from_m(m + 1);
          line(std::string(name) + " per_call widened", time(w, kernels::WeightMode::per_call));
          kernels::detail::set_linear_blocked_from_m(0);
        }
        kernels::detail::set_linear_stored_gemm(true);
      }
    }
  }
}

// The stored-form GEMM's dequantize pass alone, per weight form: one 64 x 3072 tile (FLUX's K) converted into the
// microkernel's layout, single-threaded, best of reps, at the AVX-512 level and by the scalar twin (the baseline);
// "all tiles" walks the 144 tiles of a 9216-feature weight once (its stored bytes from L3 or DRAM), "one tile" the
// same tile again (from L1 / L2). Beside it the microkernel's time for one tile's products at M = 256 (from "bf16 via
// stored GEMM" on the whole weight, per tile and thread), so each line shows the pass's share of a product there.
void bench_tiles(int reps) {
  const int64_t n = 9216, k = 3072, m = 256, n_tiles = n / kernels::detail::kStoredNr;
  const Tensor w32 = Tensor::from_f32({n, k}, random_vector(size_t(n * k), 2));
  const auto ones = unit_importance(k);
  const Tensor w16 = w32.to(DType::bf16);
  double product = 0;  // seconds per tile's products at M = 256, one thread
  {
    const std::vector<float> x = random_vector(size_t(m * k), 1);
    std::vector<uint16_t> xb(x.size());
    convert_f32_to_bf16(x.data(), xb.data(), xb.size());
    std::vector<float> y(size_t(m * n));
    kernels::detail::StoredGemm g;
    g.dtype = DType::bf16, g.w = w16.raw(), g.n = n, g.k = k, g.x = xb.data(), g.m = m, g.y = y.data();
    product = best_seconds(reps, [&] { kernels::detail::gemm_stored_bf16(g); }) * default_pool().n_threads() /
              double(n_tiles);
  }
  std::printf("dequantize pass, one 64 x %lld tile, one thread; the products of one tile at M = %lld: %.1f us\n",
              static_cast<long long>(k), static_cast<long long>(m), product * 1e6);
  const std::pair<const char*, Tensor> forms[] = {{"bf16", w16},
                                                  {"f16", w32.to(DType::f16)},
                                                  {"f8_e4m3", random_f8(n, k)},
                                                  {"q8_0", quantize(w32, DType::q8_0, ones.data())},
                                                  {"q4_0", quantize(w32, DType::q4_0, ones.data())},
                                                  {"q4_1", quantize(w32, DType::q4_1, ones.data())},
                                                  {"q5_0", quantize(w32, DType::q5_0, ones.data())},
                                                  {"q5_1", quantize(w32, DType::q5_1, ones.data())},
                                                  {"q4_K", quantize(w32, DType::q4_K, ones.data())},
                                                  {"q5_K", quantize(w32, DType::q5_K, ones.data())},
                                                  {"q6_K", quantize(w32, DType::q6_K, ones.data())}};
  AlignedBuffer tile;
  tile.resize(size_t(kernels::detail::kStoredTileUnits) * sizeof(uint32_t));
  for (const auto& [name, w] : forms) {
    kernels::detail::StoredGemm g;
    g.dtype = w.dtype(), g.w = w.raw(), g.n = n, g.k = k;
    auto per_tile = [&](bool all) {
      return best_seconds(reps,
                          [&] {
                            for (int64_t t = 0; t < n_tiles; ++t) {
                              kernels::detail::dequantize_stored_tile(g, all ? t * kernels::detail::kStoredNr : 0,
                                                                      kernels::detail::kStoredNr, 0, k,
                                                                      tile.as<uint32_t>());
                            }
                          }) /
             double(n_tiles);
    };
    const IsaLevel level = isa_level();
    const double all = per_tile(true), one = per_tile(false);
    set_cpu_cap(IsaLevel::scalar);
    const double scalar_one = per_tile(false);
    set_cpu_cap(level);
    std::printf(
        "  %-8s all tiles %6.1f us (%4.1f%% of the products), one tile %6.1f us (%4.1f%%, %5.1f values/ns); "
        "scalar twin %7.1f us, x%.1f\n",
        name, all * 1e6, 100.0 * all / product, one * 1e6, 100.0 * one / product, 64.0 * double(k) / one * 1e-9,
        scalar_one * 1e6, scalar_one / one);
  }
}

// The arguments after a mode ("step", "stored"): row counts M, shapes KxN (e.g. 3072x12288) and `widened`, in any
// order.
struct ProductArgs {
  std::vector<int64_t> ms;
  std::vector<StoredBenchShape> shapes;
  bool widened = false;
};
ProductArgs parse_products(int argc, char** argv) {
  ProductArgs out;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "widened") {
      out.widened = true;
    } else if (const size_t x = a.find('x'); x != std::string::npos) {
      out.shapes.push_back({std::atoll(a.c_str()), std::atoll(a.c_str() + x + 1)});
    } else {
      out.ms.push_back(std::atoll(a.c_str()));
    }
  }
  return out;
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2;
  const bool attention_only = argc > 2 && std::string(argv[2]) == "attention";
  if (argc > 2 && std::string(argv[2]) == "quant") {
    std::printf("bench_matmul quant: %d threads, isa %s; products in %s; best of %d after a warm-up\n",
                hardware_threads(), isa_name(isa_level()), dtype_name(kernels::linear_compute_dtype()), reps);
    bench_quantized(reps, argc > 3 && std::string(argv[3]) == "two-pass");
    return 0;
  }
  if (argc > 2 && std::string(argv[2]) == "step") {
    std::printf("bench_matmul step: %d threads, isa %s; products in %s; best of %d after a warm-up\n",
                hardware_threads(), isa_name(isa_level()), dtype_name(kernels::linear_compute_dtype()), reps);
    // With row counts and shapes: each shape at each M (count 1) instead of the passes.
    const ProductArgs a = parse_products(argc, argv);
    std::vector<PassShape> products;
    for (const StoredBenchShape& sh : a.shapes) {
      for (int64_t m : a.ms) products.push_back({m, sh.k, sh.n, 1});
    }
    if (products.empty()) {
      bench_steps(reps);
    } else {
      bench_pass(reps, "these products", products);
    }
    return 0;
  }
  if (argc > 2 && std::string(argv[2]) == "stored") {
    std::printf("bench_matmul stored: %d threads, isa %s; products in %s; best of %d after a warm-up\n",
                hardware_threads(), isa_name(isa_level()), dtype_name(kernels::linear_compute_dtype()), reps);
    ProductArgs a = parse_products(argc, argv);
    if (a.ms.empty()) a.ms = {256, 512, 1280, 4608};
    bench_stored_gemm(reps, a.ms, a.shapes, a.widened);
    return 0;
  }
  if (argc > 2 && std::string(argv[2]) == "tiles") {
    std::printf("bench_matmul tiles: isa %s; best of %d after a warm-up\n", isa_name(isa_level()), reps);
    bench_tiles(reps);
    return 0;
  }
  if (argc > 2 && std::string(argv[2]) == "int8") {
    std::printf("bench_matmul int8: %d threads, isa %s, cpu: %s; best of %d after a warm-up\n", hardware_threads(),
                isa_name(isa_level()), cpu_features().describe().c_str(), reps);
    bench_int8(reps);
    return 0;
  }
  const int64_t m = 1280;
  const bool has_bf16 = cpu_features().avx512_bf16;
  const bool bf16_products = kernels::linear_compute_dtype() == DType::bf16;
  std::printf("bench_matmul: M = %lld, %d threads, isa %s, cpu: %s; best of %d after a warm-up\n",
              static_cast<long long>(m), hardware_threads(), isa_name(isa_level()), cpu_features().describe().c_str(),
              reps);
  std::printf("16-bit weights multiply in %s (linear_compute_dtype)\n", dtype_name(kernels::linear_compute_dtype()));
  struct KN {
    int64_t k, n;
  };
  const std::vector<float> x = random_vector(size_t(m) * 12288, 1);
  std::vector<uint16_t> x_bf16(x.size());
  convert_f32_to_bf16(x.data(), x_bf16.data(), x.size());
  std::vector<KN> shapes{{3072, 9216}, {3072, 3072}, {3072, 12288}, {12288, 3072}};
  if (attention_only) shapes.clear();
  for (KN s : shapes) {
    const double flop = 2.0 * double(m) * double(s.k) * double(s.n);
    std::printf("\n%lld x %lld x %lld (M x K x N), %.1f GFLOP\n", static_cast<long long>(m),
                static_cast<long long>(s.k), static_cast<long long>(s.n), flop * 1e-9);
    const std::vector<float> w = random_vector(size_t(s.n * s.k), 2);
    const std::vector<float> b = random_vector(size_t(s.n), 3);
    Tensor w32 = Tensor::from_f32({s.n, s.k}, w);
    Tensor w16 = w32.to(DType::bf16);
    Tensor bias = Tensor::from_f32({s.n}, b);
    std::vector<float> y(size_t(m * s.n));

    double base_f32 = 0, base_bf16 = 0;
    {
      OnednnMatmul ref(dt::f32, m, s.k, s.n, x.data(), w.data(), b.data(), y.data());
      base_f32 = best_seconds(reps, [&] { ref.run(); });
      row("oneDNN f32 (baseline)", flop, base_f32, base_f32);
    }
    if (has_bf16) {
      OnednnMatmul ref(dt::bf16, m, s.k, s.n, x_bf16.data(), data_u16(w16), b.data(), y.data());
      base_bf16 = best_seconds(reps, [&] { ref.run(); });
      row("oneDNN bf16 (baseline)", flop, base_bf16, base_f32);
    }
    {
      kernels::Linear lin(w32, bias);
      row("Linear f32 prepacked", flop, best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); }), base_f32);
    }
    {
      kernels::Linear lin(w16, bias);
      const double t = best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); });
      row(bf16_products ? "Linear bf16 prepacked (bf16 prod.)" : "Linear bf16 prepacked (f32 prod.)", flop, t,
          base_f32);
    }
    if (has_bf16 && !bf16_products) {
      kernels::detail::force_bf16_products(1);
      kernels::Linear lin(w16, bias);
      kernels::detail::force_bf16_products(-1);
      const double t = best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); });
      row("Linear bf16 prepacked, bf16 forced", flop, t, base_f32);
      std::printf("  %-34s x%.2f of oneDNN bf16\n", "", base_bf16 / t);
    }
    {
      kernels::Linear lin(w32, bias, kernels::WeightMode::per_call);
      row("Linear f32 per_call", flop, best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); }), base_f32);
    }
    {
      kernels::Linear lin(w16, bias, kernels::WeightMode::per_call);
      row("Linear bf16 per_call", flop, best_seconds(reps, [&] { lin.forward(x.data(), m, y.data()); }), base_f32);
    }
    row("matmul_f32 (ours, no oneDNN)", flop,
        best_seconds(std::max(1, reps - 1),
                     [&] { kernels::matmul_f32(x.data(), w.data(), b.data(), y.data(), m, s.k, s.n); }),
        base_f32);
  }

  {
    const int64_t heads = 24, len = 1280, dim = 128;
    const double flop = 4.0 * double(heads) * double(len) * double(len) * double(dim);
    const std::vector<float> q = random_vector(size_t(heads * len * dim), 4), k = random_vector(q.size(), 5),
                             v = random_vector(q.size(), 6);
    std::vector<float> out(q.size());
    kernels::AttentionParams p{.n_heads = heads, .len_q = len, .len_k = len, .head_dim = dim, .scale = 0.08838835f};
    const double t = best_seconds(reps, [&] { kernels::attention(p, q.data(), k.data(), v.data(), out.data()); });
    std::printf("\nattention %lld heads x %lld tokens x head_dim %lld (%.1f GFLOP): %.1f ms, %.1f GFLOP/s\n",
                static_cast<long long>(heads), static_cast<long long>(len), static_cast<long long>(dim), flop * 1e-9,
                t * 1e3, flop / t * 1e-9);
  }
  return 0;
}
