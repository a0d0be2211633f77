// bench_vae: the FLUX VAE at its real shapes (ch 128, ch_mult 1,2,4,4, 2 res blocks, z 16; make-test-model's
// full-size tables, random f32 weights) through AutoEncoder: decode 512x512 and 1024x1024, the 1024x1024
// decode in tiles, encode 512x512. Each case runs once on the new path (weights reordered once, cached
// primitives, blocked activations, fused group norm + SiLU) and once on the baseline measured in the same run,
// the old per-call path (ConvMode::per_call: plain layouts, a primitive and image + weight reorders per
// convolution). Where the CPU has AVX512_BF16, the same weights in the bf16 (fast) mode: first decode, the same
// decode again (a server's later jobs), and its baseline, bf16 direct convolutions everywhere. Per run: seconds,
// GFLOP/s of the convolutions (2 Cin Cout k^2 per output pixel; attention and the rest not counted), % of the f32 FMA
// peak (bf16 rows: the bf16 dot-product peak) probed here, extra peak RSS over the RSS before the run, page faults.
// Usage: bench_vae [case ...]   cases: decode512 decode1024 tiled1024 encode512 (default: all); FLUX_BENCH_KEEP=1
// reuses the weight file of an earlier run; FLUX_BENCH_NO_OLD=1 skips the baseline runs.
#include <immintrin.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/cpu.h"
#include "base/system.h"
#include "base/thread_pool.h"
#include "bench_util.h"
#include "io/weight_store.h"
#include "kernels/conv_layer.h"
#include "models/autoencoder.h"
#include "peak.h"
#include "pipeline/test_model_tables.h"
#include "pipeline/test_model_write.h"

namespace {

using namespace flux;

// ---- convolution flops of the FLUX VAE (BFL autoencoder.py), from its params ----

double conv(int64_t in, int64_t out, int64_t k, int64_t pixels) {
  return 2.0 * double(in * out * k * k) * double(pixels);
}

double resnet(int64_t in, int64_t out, int64_t pixels) {
  return conv(in, out, 3, pixels) + conv(out, out, 3, pixels) + (in != out ? conv(in, out, 1, pixels) : 0.0);
}

double decode_flops(const AutoEncoderParams& p, int64_t height, int64_t width) {
  int64_t px = height / 8 * (width / 8), block_in = p.ch * p.ch_mult.back();
  double f = conv(p.z_channels, block_in, 3, px) + 2 * resnet(block_in, block_in, px);
  for (auto i = static_cast<int64_t>(p.ch_mult.size()) - 1; i >= 0; --i) {
    const int64_t block_out = p.ch * p.ch_mult[size_t(i)];
    for (int64_t j = 0; j <= p.num_res_blocks; ++j, block_in = block_out) f += resnet(block_in, block_out, px);
    if (i != 0) {
      px *= 4;
      f += conv(block_in, block_in, 3, px);
    }
  }
  return f + conv(block_in, p.out_ch, 3, px);
}

double encode_flops(const AutoEncoderParams& p, int64_t height, int64_t width) {
  int64_t px = height * width, block_in = p.ch;
  double f = conv(p.in_channels, p.ch, 3, px);
  for (size_t i = 0; i < p.ch_mult.size(); ++i) {
    const int64_t block_out = p.ch * p.ch_mult[i];
    for (int64_t j = 0; j < p.num_res_blocks; ++j, block_in = block_out) f += resnet(block_in, block_out, px);
    if (i + 1 != p.ch_mult.size()) {
      px /= 4;
      f += conv(block_in, block_in, 3, px);
    }
  }
  return f + 2 * resnet(block_in, block_in, px) + conv(block_in, 2 * p.z_channels, 3, px);
}

// ---- one measured run ----

struct Run {
  double seconds = 0;
  double extra_rss_mib = 0;
  long faults = 0;
};

long page_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt + u.ru_majflt;
}

Run measure(const std::function<void()>& fn) {
  reset_peak_resident_memory();
  const double rss0 = double(resident_memory_bytes());
  const long faults0 = page_faults();
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.faults = page_faults() - faults0;
  r.extra_rss_mib = (double(peak_resident_memory_bytes()) - rss0) / double(1 << 20);
  return r;
}

// peak: the f32 FMA or bf16 dot-product peak (peak_name), whichever the row's mode multiplies in.
void print_row(const char* path, const Run& r, double flop, double peak, const char* peak_name) {
  std::printf("  %-34s %8.2f s %7.1f GFLOP/s %5.1f%% of %s peak  +%7.0f MiB peak RSS %9ld page faults\n", path,
              r.seconds, flop / r.seconds * 1e-9, peak > 0 ? 100.0 * flop / r.seconds * 1e-9 / peak : 0.0, peak_name,
              r.extra_rss_mib, r.faults);
}

Tensor random_tensor(const Shape& shape, uint32_t seed, float amp) {
  const std::vector<float> v = bench::random_vector(size_t(shape.numel()), seed, amp);
  return Tensor::from_f32(shape, std::span<const float>(v.data(), v.size()));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> cases;
  for (int i = 1; i < argc; ++i) cases.emplace_back(argv[i]);
  if (cases.empty()) cases = {"decode512", "decode1024", "tiled1024", "encode512"};
  const bool run_old = std::getenv("FLUX_BENCH_NO_OLD") == nullptr;
  // Probed first, on an idle pool (after oneDNN's first primitives the f32 probe read half the real peak).
  const double peak = bench::f32_peak_gflops(), peak16 = bench::bf16_peak_gflops();

  // Weights: the full-size VAE tables with streamed random values, f32 as BFL's ae.safetensors.
  test_model::Sizes sizes = test_model::sizes_for(TestModelSize::full);
  const test_model::Params params = test_model::ae_weights(sizes);
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "fluxcpp-bench-vae";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "ae.safetensors").string();
  if (std::getenv("FLUX_BENCH_KEEP") == nullptr || !std::filesystem::exists(path)) {
    test_model::write_safetensors_streamed(path, test_model::as_stored(params), params,
                                           *test_model::streamed_values(params, 1), {}, {});
  }
  auto load = [&](kernels::ConvMode mode, std::optional<DType> compute) {
    WeightStore store = WeightStore::open(path);
    return AutoEncoder::load(store, AutoEncoderParams::resolve(store, ""), {.compute = compute, .conv_mode = mode});
  };
  const AutoEncoder ae = load(kernels::ConvMode::cached, std::nullopt);
  const AutoEncoder old = load(kernels::ConvMode::per_call, std::nullopt);
  // The same weights in the bf16 (fast) mode, what 16-bit stored VAE weights get where bf16 products are fast:
  // Winograd in f32 where it applies (conv_layer.h); and the baseline, bf16 direct convolutions everywhere.
  std::optional<AutoEncoder> ae_bf16, ae_direct;
  if (kernels::conv_bf16_supported()) {
    ae_bf16.emplace(load(kernels::ConvMode::cached, DType::bf16));
    kernels::set_conv_winograd(false);
    ae_direct.emplace(load(kernels::ConvMode::cached, DType::bf16));
    kernels::set_conv_winograd(true);
  }
  const AutoEncoderParams& p = ae.params();

  std::printf(
      "bench_vae: FLUX VAE ch %lld, ch_mult 1,2,4,4, %lld res blocks, z %lld, random f32 weights; %d threads, "
      "%s, conv block %lld, compute %s; f32 FMA peak %.1f GFLOP/s, bf16 peak %.1f GFLOP/s\n",
      static_cast<long long>(p.ch), static_cast<long long>(p.num_res_blocks), static_cast<long long>(p.z_channels),
      default_pool().n_threads(), cpu_detected().describe().c_str(),
      static_cast<long long>(kernels::conv_preferred_block()), dtype_name(ae.compute_dtype()), peak, peak16);

  for (const std::string& c : cases) {
    const bool encode = c.rfind("encode", 0) == 0, tiled = c.rfind("tiled", 0) == 0;
    const int64_t size = std::atoll(c.c_str() + (encode ? 6 : tiled ? 5 : 6));
    if (size <= 0 || size % 16 != 0) {
      std::fprintf(stderr, "unknown case %s\n", c.c_str());
      return 2;
    }
    const VaeTiling tiling = tiled ? VaeTiling{.tile = AutoEncoder::kAutoTile} : VaeTiling{};
    const double flop = encode ? encode_flops(p, size, size) : decode_flops(p, size, size);
    std::printf("%s %lldx%lld%s: %.2f TFLOP of convolutions%s\n", encode ? "encode" : "decode",
                static_cast<long long>(size), static_cast<long long>(size),
                tiled ? " in tiles of at most 512 px (64 px overlap)" : "", flop * 1e-12,
                tiled ? " untiled (the tiles' overlaps add more work: GFLOP/s below are of the untiled count)" : "");
    const Tensor input =
        encode ? random_tensor({3, size, size}, 2, 1.0f) : random_tensor({16, size / 8, size / 8}, 1, 1.5f);
    auto work = [&](const AutoEncoder& m) {
      return [&] {
        const Tensor out = encode ? m.encode(input, tiling) : m.decode(input, tiling);
        if (!std::isfinite(out.data<float>()[0])) std::printf("  (non-finite output)\n");
      };
    };
    const Run r_new = measure(work(ae));
    print_row("new (cached, blocked)", r_new, flop, peak, "f32");
    if (ae_bf16) {
      const Run r_bf16 = measure(work(*ae_bf16));
      print_row("fast mode (Winograd f32 + bf16)", r_bf16, flop, peak16, "bf16");
      // A server's later jobs: primitives made, oneDNN's scratch already grown.
      const Run r_again = measure(work(*ae_bf16));
      print_row("fast mode, the same decode again", r_again, flop, peak16, "bf16");
      const Run r_direct = measure(work(*ae_direct));
      print_row("baseline: bf16 direct everywhere", r_direct, flop, peak16, "bf16");
      std::printf("  fast mode x%.2f of the bf16 direct baseline's speed\n", r_direct.seconds / r_bf16.seconds);
      const Tensor a = encode ? ae.encode(input, tiling) : ae.decode(input, tiling);
      const Tensor b = encode ? ae_bf16->encode(input, tiling) : ae_bf16->decode(input, tiling);
      double num = 0, den = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        const double d = double(a.data<float>()[i]) - b.data<float>()[i];
        num += d * d, den += double(a.data<float>()[i]) * a.data<float>()[i];
      }
      std::printf("  fast mode vs f32 output: rms rel %.2e; x%.2f of f32's speed\n",
                  std::sqrt(num / std::max(den, 1e-30)), r_new.seconds / r_bf16.seconds);
    }
    if (run_old) {
      const Run r_old = measure(work(old));
      print_row("old (per-call conv)", r_old, flop, peak, "f32");
      std::printf("  speed-up x%.2f\n", r_old.seconds / r_new.seconds);
    }
  }
  return 0;
}
