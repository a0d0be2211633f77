// One full-size DoubleStreamBlock and one SingleStreamBlock (hidden 3072, 24 heads, MLP 12288; 256 text + 1024
// image tokens = a 512x512 image) with random bf16 weights: seconds per block, GFLOP/s, and the extrapolated
// seconds per denoising step of the 19 + 38 block model, next to a bf16 matmul baseline measured in the same run
// (kernels::Linear at M=1280, K=3072, N=12288). Each block runs twice: attention in f32 and (where the block's
// products are narrow, FluxWeights::attention_in_bf16) in bf16, with the attention's share of the block and the
// relative error of the block's output with bf16 attention against f32 attention. "rest" is the time outside
// the products and attention, measured inside the block's own runs (Workspace::timings); the breakdown lines
// below it time the products and attention again on their own. Last, the product precisions: both blocks bound
// again at Precision::f32, bf16 (where the CPU has AVX512_BF16) and int8, attention in f32, each block's time
// and the relative error of its output (and of its update) against the f32 products.
//
// The weights of the two blocks (~1 GB in bf16) are written to a temporary safetensors file and bound by name,
// exactly as from a checkpoint (FLUX_BENCH_KEEP=1 keeps the file for the next run).
// Usage: bench_flux_block [repeats=2] [n_img=1024] [n_txt=256]
//
// `bench_flux_block lora [rank=16] [repeats=2] [n_img=1024] [n_txt=256]`: what LoRA adapters cost at full size, as
// fractions of one denoising step (19 double + 38 single blocks, extrapolated from the two blocks): a kohya adapter
// of that rank on every block Linear of all 57 blocks (bf16, ~0.16 GB at rank 16) is written and parsed (a first
// use; a server caches it), bound as a run-time LoraSet (switching adapters between two requests), and run at
// run time (the side products' share of a step); and, for comparison, merged into the two blocks' weights as they
// are bound again (what switching would cost if adapters were merged).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/cpu.h"
#include "bench_util.h"
#include "io/safetensors.h"
#include "io/weight_store.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "models/flux_blocks.h"
#include "models/lora.h"
#include "models/lora_runtime.h"
#include "tensor/convert.h"

using namespace flux;
using bench::best_seconds;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

uint64_t g_state = 0x9E3779B97F4A7C15ull;
float next_uniform() {  // xorshift64*, uniform [-1, 1)
  g_state ^= g_state >> 12;
  g_state ^= g_state << 25;
  g_state ^= g_state >> 27;
  const uint64_t r = g_state * 0x2545F4914F6CDD1Dull;
  return static_cast<float>(r >> 40) / static_cast<float>(1 << 23) - 1.0f;
}

// Random bf16 [shape] with values in [-amp, amp).
Tensor random_bf16(const Shape& shape, float amp) {
  Tensor t = Tensor::empty(DType::bf16, shape);
  auto* out = static_cast<uint16_t*>(t.raw_mut());
  for (int64_t i = 0; i < t.numel(); ++i) out[i] = f32_to_bf16(amp * next_uniform());
  return t;
}

Tensor random_f32(const Shape& shape, float amp) {
  Tensor t = Tensor::empty(DType::f32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.mut<float>()[i] = amp * next_uniform();
  return t;
}

void add_linear(std::vector<std::pair<std::string, Tensor>>& out, const std::string& prefix, int64_t in, int64_t n) {
  out.emplace_back(prefix + "weight", random_bf16({n, in}, 1.0f / std::sqrt(static_cast<float>(in))));
  out.emplace_back(prefix + "bias", random_bf16({n}, 0.02f));
}

// The tensors of double_blocks.0 and single_blocks.0 at the real FLUX.1 sizes.
std::vector<std::pair<std::string, Tensor>> block_tensors(const FluxParams& p) {
  const int64_t h = p.hidden_size, mlp = static_cast<int64_t>(static_cast<float>(h) * p.mlp_ratio);
  const int64_t d = h / p.num_heads;
  std::vector<std::pair<std::string, Tensor>> t;
  for (const std::string s : {"img", "txt"}) {
    const std::string b = "double_blocks.0." + s;
    add_linear(t, b + "_mod.lin.", h, 6 * h);
    add_linear(t, b + "_attn.qkv.", h, 3 * h);
    t.emplace_back(b + "_attn.norm.query_norm.scale", random_bf16({d}, 1.0f));
    t.emplace_back(b + "_attn.norm.key_norm.scale", random_bf16({d}, 1.0f));
    add_linear(t, b + "_attn.proj.", h, h);
    add_linear(t, b + "_mlp.0.", h, mlp);
    add_linear(t, b + "_mlp.2.", mlp, h);
  }
  add_linear(t, "single_blocks.0.modulation.lin.", h, 3 * h);
  add_linear(t, "single_blocks.0.linear1.", h, 3 * h + mlp);
  add_linear(t, "single_blocks.0.linear2.", h + mlp, h);
  t.emplace_back("single_blocks.0.norm.query_norm.scale", random_bf16({d}, 1.0f));
  t.emplace_back("single_blocks.0.norm.key_norm.scale", random_bf16({d}, 1.0f));
  return t;
}

// The block weights' file (FLUX_BENCH_KEEP=1 keeps it between runs).
std::string write_blocks(const FluxParams& p, bool keep) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "fluxcpp-bench-flux-block";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "blocks.safetensors").string();
  const double t0 = now_s();
  if (!keep || !std::filesystem::exists(path)) {
    write_safetensors(path, block_tensors(p));
    std::printf("wrote %s (%.2f GB) in %.1f s\n", path.c_str(), std::filesystem::file_size(path) * 1e-9, now_s() - t0);
  }
  return path;
}

// The blocks' position embedding: text ids 0, image ids (0, row, col) of a square-ish grid.
transformer::PositionEmbedding block_positions(const FluxParams& p, int64_t n_txt, int64_t n_img) {
  Tensor ids = Tensor::zeros(DType::f32, {n_txt + n_img, 3});
  const auto side = static_cast<int64_t>(std::sqrt(static_cast<double>(n_img)));
  for (int64_t i = 0; i < n_img; ++i) {
    ids.mut<float>()[(n_txt + i) * 3 + 1] = static_cast<float>(i / side);
    ids.mut<float>()[(n_txt + i) * 3 + 2] = static_cast<float>(i % side);
  }
  return transformer::EmbedND{p.axes_dim, p.theta}.forward(ids);
}

int run_lora(int argc, char** argv) {
  const int64_t rank = argc > 2 ? std::atoll(argv[2]) : 16;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 2;
  const int64_t n_img = argc > 4 ? std::atoll(argv[4]) : 1024;
  const int64_t n_txt = argc > 5 ? std::atoll(argv[5]) : 256;
  const FluxParams p = FluxParams::schnell();
  const int64_t h = p.hidden_size, n = n_txt + n_img;
  const bool keep = std::getenv("FLUX_BENCH_KEEP") != nullptr;
  const std::string blocks = write_blocks(p, keep);
  WeightStore store = WeightStore::open(blocks);
  transformer::FluxWeights w(store, false);
  auto dbl = transformer::DoubleStreamBlock::bind(w, "double_blocks.0.", p);
  auto sgl = transformer::SingleStreamBlock::bind(w, "single_blocks.0.", p);

  // Every block Linear of the full model: the two bound blocks' slots first (their lora_slot indices), then the
  // same modules of blocks 1..18 and 1..37.
  std::vector<LoraSlot> slots = w.slots();
  const size_t n_bound = slots.size();
  for (size_t i = 0; i < n_bound; ++i) {
    const bool is_double = slots[i].module.rfind("double_blocks.0.", 0) == 0;
    const std::string tail = slots[i].module.substr(std::string(is_double ? "double_blocks.0." : "single_blocks.0.").size());
    for (int64_t b = 1; b < (is_double ? p.depth : p.depth_single_blocks); ++b)
      slots.push_back({str_cat(is_double ? "double_blocks." : "single_blocks.", b, ".", tail), slots[i].shape});
  }
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const LoraSlot& s : slots) {
    std::string key = "lora_unet_" + s.module;
    for (char& c : key)
      if (c == '.') c = '_';
    tensors.emplace_back(key + ".lora_down.weight", random_bf16({rank, s.shape[1]}, 1.0f / std::sqrt(float(s.shape[1]))));
    tensors.emplace_back(key + ".lora_up.weight", random_bf16({s.shape[0], rank}, 0.05f / std::sqrt(float(rank))));
    tensors.emplace_back(key + ".alpha", Tensor::from_f32(Shape{}, std::vector<float>{static_cast<float>(rank)}));
  }
  const std::string lora_path = (std::filesystem::path(blocks).parent_path() / "lora.safetensors").string();
  write_safetensors(lora_path, tensors);
  tensors.clear();
  double t0 = now_s();
  const auto adapter = std::make_shared<const LoraAdapter>(LoraAdapter::load(lora_path, p));
  const double t_parse = now_s() - t0;
  const LoraStack stack{{adapter, 1.0f}};
  const double t_bind = best_seconds(repeats + 2, [&] { LoraSet::bind(slots, stack); });
  const LoraSet set = LoraSet::bind(slots, stack);

  const transformer::PositionEmbedding pe = block_positions(p, n_txt, n_img);
  const Tensor silu_vec = random_f32({1, h}, 1.0f), x0 = random_f32({n, h}, 1.0f);
  Tensor x = x0.clone();
  transformer::Workspace ws(p, n_txt, n_img);
  const auto step_seconds = [&](const LoraSet* loras) {
    ws.loras = loras;
    const auto block = [&](const auto& b) {
      return best_seconds(repeats, [&] {
        std::copy_n(x0.data<float>(), x0.numel(), x.mut<float>());
        b.forward(x.mut<float>(), silu_vec, pe, ws);
      });
    };
    const double td = block(dbl), ts = block(sgl);
    ws.loras = nullptr;
    return std::array<double, 3>{td, ts, 19 * td + 38 * ts};
  };
  const auto plain = step_seconds(nullptr);
  const auto with = step_seconds(&set);
  // Merged instead: each block bound again with the adapter merged into its weights, against a plain re-bind.
  const auto rebind = [&](const LoraStack* merged, bool is_double) {
    return best_seconds(repeats, [&] {
      transformer::FluxWeights w2(store, false);
      w2.set_merged_loras(merged);
      if (is_double)
        transformer::DoubleStreamBlock::bind(w2, "double_blocks.0.", p);
      else
        transformer::SingleStreamBlock::bind(w2, "single_blocks.0.", p);
    });
  };
  const double rebind_d = rebind(nullptr, true), merge_d = rebind(&stack, true);
  const double rebind_s = rebind(nullptr, false), merge_s = rebind(&stack, false);
  const double step = plain[2];
  std::printf("lora rank %lld on %zu block Linears (%zu deltas, %.2f GB f32), %lld + %lld tokens\n",
              static_cast<long long>(rank), slots.size(), adapter->deltas().size(), adapter->bytes() * 1e-9,
              static_cast<long long>(n_txt), static_cast<long long>(n_img));
  std::printf("step without lora: %.2f s (double %.3f s, single %.3f s)\n", step, plain[0], plain[1]);
  std::printf("switching adapters between two requests (LoraSet::bind, adapter cached): %.3g s = %.2g%% of a step\n",
              t_bind, 100.0 * t_bind / step);
  std::printf("first use of an adapter (read + parse %.2f GB bf16 file): %.2f s = %.1f%% of a step\n",
              std::filesystem::file_size(lora_path) * 1e-9, t_parse, 100.0 * t_parse / step);
  std::printf("run-time side products: step %.2f s (double %.3f s, single %.3f s) = +%.1f%% per step\n", with[2],
              with[0], with[1], 100.0 * (with[2] / step - 1.0));
  const double merge_switch = 19 * (merge_d + rebind_d) + 38 * (merge_s + rebind_s);
  std::printf("merged instead (for comparison): re-binding a double block %.2f s (%.2f s merged), a single %.2f s "
              "(%.2f s merged); a switch un-merges and re-merges every block: ~%.0f s extrapolated = %.0f%% of a "
              "step\n",
              rebind_d, merge_d, rebind_s, merge_s, merge_switch, 100.0 * merge_switch / step);
  if (!keep) std::filesystem::remove_all(std::filesystem::path(blocks).parent_path());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "lora") return run_lora(argc, argv);
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t n_img = argc > 2 ? std::atoll(argv[2]) : 1024;
  const int64_t n_txt = argc > 3 ? std::atoll(argv[3]) : 256;
  const FluxParams p = FluxParams::schnell();
  const int64_t h = p.hidden_size, mlp = static_cast<int64_t>(static_cast<float>(h) * p.mlp_ratio);
  const int64_t n = n_txt + n_img;

  // Matmul baseline: the MLP up-projection shape.
  const int64_t bm = n, bk = h, bn = mlp;
  kernels::Linear base(random_bf16({bn, bk}, 0.02f), Tensor());
  const Tensor bx = random_f32({bm, bk}, 1.0f);
  Tensor by = Tensor::empty(DType::f32, {bm, bn});
  const double t_mm = best_seconds(repeats + 1, [&] { base.forward(bx.data<float>(), bm, by.mut<float>()); });
  const double mm_gflops = 2.0 * bm * bk * bn / t_mm * 1e-9;
  std::printf("baseline  kernels::Linear bf16 M=%lld K=%lld N=%lld: %.4f s, %.1f GFLOP/s\n", static_cast<long long>(bm),
              static_cast<long long>(bk), static_cast<long long>(bn), t_mm, mm_gflops);

  // Full-size block weights, through a safetensors file as from a checkpoint.
  const bool keep = std::getenv("FLUX_BENCH_KEEP") != nullptr;  // reuse the file across runs (same contents)
  const std::string path = write_blocks(p, keep);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  double t0 = now_s();
  WeightStore store = WeightStore::open(path);
  transformer::FluxWeights w(store, false);
  t0 = now_s();
  auto dbl = transformer::DoubleStreamBlock::bind(w, "double_blocks.0.", p);
  auto sgl = transformer::SingleStreamBlock::bind(w, "single_blocks.0.", p);
  const bool attn_bf16 = dbl.attention_bf16;  // what the model would run
  store.finish("bench blocks");
  std::printf("bound both blocks in %.1f s\n", now_s() - t0);

  const transformer::PositionEmbedding pe = block_positions(p, n_txt, n_img);
  const Tensor silu_vec = random_f32({1, h}, 1.0f);
  const Tensor x0 = random_f32({n, h}, 1.0f);
  Tensor x = x0.clone();
  transformer::Workspace ws(p, n_txt, n_img);

  const double attn_flop = 4.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(h);
  const double dbl_flop = 2.0 * n * (3 * h * h + h * h + 2 * h * mlp) + 2.0 * 2 * 6 * h * h + attn_flop;
  const double sgl_flop = 2.0 * n * (h * (3 * h + mlp) + (h + mlp) * h) + 2.0 * 3 * h * h + attn_flop;
  // Block seconds with attention in f32 and in bf16; each block's output kept for the accuracy figure. The
  // blocks report the seconds of their products and of attention (Workspace::timings), so "rest" (everything
  // else: norms, modulation, QKNorm + RoPE, GELU, residuals, copies) comes from the same runs: the smallest
  // forward - products - attention over the repeats.
  struct BlockTime {
    double total = 1e30, rest = 1e30;
  };
  const auto time_block = [&](const auto& block) {
    BlockTime best;
    for (int r = 0; r <= repeats; ++r) {  // run 0 warms up
      std::copy_n(x0.data<float>(), x0.numel(), x.mut<float>());
      transformer::Workspace::Timings t;
      ws.timings = &t;
      const double t0 = now_s();
      block.forward(x.mut<float>(), silu_vec, pe, ws);
      const double total = now_s() - t0;
      ws.timings = nullptr;
      if (r == 0) continue;
      best.total = std::min(best.total, total);
      best.rest = std::min(best.rest, total - t.products - t.attention);
    }
    return best;
  };
  struct Run {
    double t_dbl = 0, t_sgl = 0, rest_dbl = 0, rest_sgl = 0;
    Tensor out_dbl, out_sgl;
  };
  const auto run_both = [&](bool bf16) {
    dbl.attention_bf16 = sgl.attention_bf16 = bf16;
    Run r;
    const BlockTime d = time_block(dbl);
    r.t_dbl = d.total;
    r.rest_dbl = d.rest;
    r.out_dbl = x.clone();
    const BlockTime s = time_block(sgl);
    r.t_sgl = s.total;
    r.rest_sgl = s.rest;
    r.out_sgl = x.clone();
    return r;
  };
  const Run f32_run = run_both(false);
  const Run bf16_run = attn_bf16 ? run_both(true) : Run{};
  const Run& model_run = attn_bf16 ? bf16_run : f32_run;
  const double t_dbl = model_run.t_dbl, t_sgl = model_run.t_sgl;
  dbl.attention_bf16 = sgl.attention_bf16 = attn_bf16;

  // Breakdown: the block's matmuls alone, and the attention kernel alone; the rest is norms, RoPE, copies.
  const auto lin = [&](const nn::Linear& l, int64_t rows, const Tensor& in, Tensor& out) {
    l.op.forward(in.data<float>(), rows, out.mut<float>());
  };
  Tensor mod_in = random_f32({1, h}, 1.0f);
  const double t_dbl_mm = best_seconds(repeats, [&] {
    for (const auto* s : {&dbl.img_attn, &dbl.txt_attn}) {
      const int64_t rows = s == &dbl.img_attn ? n_img : n_txt;
      lin(s->qkv, rows, ws.x_mod, ws.wide);
      lin(s->proj, rows, ws.attn, ws.out);
    }
    for (const auto* m : {&dbl.img_mlp, &dbl.txt_mlp}) {
      const int64_t rows = m == &dbl.img_mlp ? n_img : n_txt;
      lin(m->fc1, rows, ws.x_mod, ws.wide);
      lin(m->fc2, rows, ws.wide, ws.out);
    }
    dbl.img_mod.forward(mod_in);
    dbl.txt_mod.forward(mod_in);
  });
  const double t_sgl_mm = best_seconds(repeats, [&] {
    lin(sgl.linear1, n, ws.x_mod, ws.wide);
    lin(sgl.linear2, n, ws.cat, ws.out);
    sgl.modulation.forward(mod_in);
  });
  kernels::AttentionParams ap;
  ap.n_heads = p.num_heads;
  ap.len_q = ap.len_k = n;
  ap.head_dim = h / p.num_heads;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(ap.head_dim));
  const auto time_attention = [&](bool bf16) {
    ap.bf16 = bf16;
    return best_seconds(repeats, [&] {
      kernels::attention(ap, ws.q.data<float>(), ws.k.data<float>(), ws.v.data<float>(), ws.attn.mut<float>());
    });
  };
  const double t_attn_f32 = time_attention(false);
  const double t_attn_bf16 = attn_bf16 ? time_attention(true) : t_attn_f32;
  const double t_attn = attn_bf16 ? t_attn_bf16 : t_attn_f32;
  bool finite = true;
  for (const Tensor* t : {&model_run.out_dbl, &model_run.out_sgl})
    for (int64_t i = 0; i < t->numel(); ++i) finite = finite && std::isfinite(t->data<float>()[i]);

  std::printf("tokens    %lld text + %lld image = %lld\n", static_cast<long long>(n_txt), static_cast<long long>(n_img),
              static_cast<long long>(n));
  std::printf("DoubleStreamBlock: %.3f s, %.1f GFLOP -> %.1f GFLOP/s (%.0f%% of the matmul baseline)\n", t_dbl,
              dbl_flop * 1e-9, dbl_flop / t_dbl * 1e-9, 100.0 * dbl_flop / t_dbl * 1e-9 / mm_gflops);
  std::printf("SingleStreamBlock: %.3f s, %.1f GFLOP -> %.1f GFLOP/s (%.0f%% of the matmul baseline)\n", t_sgl,
              sgl_flop * 1e-9, sgl_flop / t_sgl * 1e-9, 100.0 * sgl_flop / t_sgl * 1e-9 / mm_gflops);
  std::printf("  breakdown double: matmuls %.3f s (%.1f GFLOP/s), attention %.3f s (%.1f GFLOP/s), rest %.3f s\n",
              t_dbl_mm, (dbl_flop - attn_flop) / t_dbl_mm * 1e-9, t_attn, attn_flop / t_attn * 1e-9,
              t_dbl - t_dbl_mm - t_attn);
  std::printf("  breakdown single: matmuls %.3f s (%.1f GFLOP/s), attention %.3f s, rest %.3f s\n", t_sgl_mm,
              (sgl_flop - attn_flop) / t_sgl_mm * 1e-9, t_attn, t_sgl - t_sgl_mm - t_attn);
  std::printf("  rest (in the block's own run, outside products and attention): double %.3f s, single %.3f s\n",
              model_run.rest_dbl, model_run.rest_sgl);
  const double step = 19 * t_dbl + 38 * t_sgl;
  const double step_flop = 19 * dbl_flop + 38 * sgl_flop;
  std::printf("per step (19 double + 38 single): %.1f s extrapolated, %.2f TFLOP; at the baseline's rate: %.1f s\n",
              step, step_flop * 1e-12, step_flop / (mm_gflops * 1e9));

  std::printf("attention %s (24 heads x %lld x 128): f32 %.4f s (%.1f GFLOP/s)", attn_bf16 ? "bf16" : "f32",
              static_cast<long long>(n), t_attn_f32, attn_flop / t_attn_f32 * 1e-9);
  if (attn_bf16) {
    std::printf(", bf16 %.4f s (%.1f GFLOP/s, x%.2f)", t_attn_bf16, attn_flop / t_attn_bf16 * 1e-9,
                t_attn_f32 / t_attn_bf16);
  }
  std::printf("\n  share of the block: double %.0f%% (f32 attention) -> %.0f%%, single %.0f%% -> %.0f%%\n",
              100.0 * t_attn_f32 / f32_run.t_dbl, 100.0 * t_attn / t_dbl, 100.0 * t_attn_f32 / f32_run.t_sgl,
              100.0 * t_attn / t_sgl);
  if (attn_bf16) {
    const double step_f32 = 19 * f32_run.t_dbl + 38 * f32_run.t_sgl;
    std::printf(
        "  blocks with f32 attention: double %.3f s, single %.3f s, step %.1f s; with bf16: %.3f s, %.3f s, "
        "step %.1f s (x%.2f)\n",
        f32_run.t_dbl, f32_run.t_sgl, step_f32, t_dbl, t_sgl, step, step_f32 / step);
    // Accuracy: block output (x0 + the block's update) with bf16 attention vs f32 attention, relative to the
    // output and to the update alone (the residual stream x0 dominates the output).
    const auto rel = [&](const Tensor& got, const Tensor& want, const char* name) {
      double d2 = 0, o2 = 0, u2 = 0, dmax = 0, omax = 0, umax = 0;
      for (int64_t i = 0; i < want.numel(); ++i) {
        const double g = got.data<float>()[i], r = want.data<float>()[i], u = r - x0.data<float>()[i];
        d2 += (g - r) * (g - r);
        o2 += r * r;
        u2 += u * u;
        dmax = std::max(dmax, std::fabs(g - r));
        omax = std::max(omax, std::fabs(r));
        umax = std::max(umax, std::fabs(u));
      }
      std::printf(
          "  %s block output, bf16 vs f32 attention: rms rel %.2e (max rel %.2e) of the output, rms rel %.2e "
          "(max rel %.2e) of the block's update\n",
          name, std::sqrt(d2 / o2), dmax / omax, std::sqrt(d2 / u2), dmax / umax);
    };
    rel(bf16_run.out_dbl, f32_run.out_dbl, "double");
    rel(bf16_run.out_sgl, f32_run.out_sgl, "single");
  }
  // Product precisions: the same weights bound again per kernels::Precision, attention in f32 throughout.
  {
    std::printf("product precision (attention f32), block time and error of the block output vs f32 products:\n");
    struct Out {
      Tensor dbl, sgl;
    };
    Out f32_out;
    std::vector<kernels::Precision> precisions{kernels::Precision::f32};
    if (cpu_features().avx512_bf16) precisions.push_back(kernels::Precision::bf16);
    precisions.push_back(kernels::Precision::int8);
    for (kernels::Precision prec : precisions) {
      kernels::set_default_precision(prec);
      auto d = transformer::DoubleStreamBlock::bind(w, "double_blocks.0.", p);
      auto s = transformer::SingleStreamBlock::bind(w, "single_blocks.0.", p);
      kernels::set_default_precision(kernels::Precision::automatic);
      d.attention_bf16 = s.attention_bf16 = false;
      Out o;
      const double td = time_block(d).total;
      o.dbl = x.clone();
      const double ts = time_block(s).total;
      o.sgl = x.clone();
      if (prec == kernels::Precision::f32) f32_out = o;
      // rms of (got - want) over rms of want (the output) and over rms of want - x0 (the block's update).
      const auto err = [&](const Tensor& got, const Tensor& want) {
        double d2 = 0, o2 = 0, u2 = 0;
        for (int64_t i = 0; i < want.numel(); ++i) {
          const double g = got.data<float>()[i], r = want.data<float>()[i], u = r - x0.data<float>()[i];
          d2 += (g - r) * (g - r);
          o2 += r * r;
          u2 += u * u;
        }
        return std::make_pair(std::sqrt(d2 / o2), std::sqrt(d2 / u2));
      };
      const auto [dbl_out, dbl_upd] = err(o.dbl, f32_out.dbl);
      const auto [sgl_out, sgl_upd] = err(o.sgl, f32_out.sgl);
      std::printf(
          "  %-5s double %.3f s, single %.3f s, step %.1f s | rms rel error: double %.2e (update %.2e), single "
          "%.2e (update %.2e)\n",
          kernels::precision_name(prec), td, ts, 19 * td + 38 * ts, dbl_out, dbl_upd, sgl_out, sgl_upd);
      if (prec != kernels::Precision::f32 && attn_bf16) {  // what the model runs: attention in bf16 as well
        d.attention_bf16 = s.attention_bf16 = true;
        const double td2 = time_block(d).total, ts2 = time_block(s).total;
        std::printf("  %-5s with bf16 attention (as the model runs): double %.3f s, single %.3f s, step %.1f s\n",
                    kernels::precision_name(prec), td2, ts2, 19 * td2 + 38 * ts2);
      }
    }
  }
  std::printf("output finite: %s\n", finite ? "yes" : "NO");
  if (!keep) std::filesystem::remove_all(dir);
  return finite ? 0 : 1;
}
