// Text encoders at full width: one T5-XXL block (d_model 4096, 64 heads x 64, d_ff 10240) on 256 tokens and
// one CLIP-L layer (768, 12 heads, 3072) on 77 tokens, with random bf16 weights loaded through the real
// loaders (a temporary safetensors file). Prints the time per layer, GFLOP/s, the extrapolated full encoder
// (24 and 12 layers), and next to them, measured in the same run:
//   - a plain oneDNN matmul baseline: the layer's matmuls alone, bf16 x bf16 -> f32 and f32 x f32 -> f32,
//     weights pre-reordered (kernels::Linear picks bf16 or f32 products for 16-bit weights by measuring);
//   - kernels::Linear on the layer's biggest matmul;
//   - the T5 layer with f32 and with int8 products (kernels::Precision), and the int8 output's error.
// Usage: bench_text_encoders [reps]
#include <cmath>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/cpu.h"
#include "base/thread_pool.h"
#include "io/safetensors.h"
#include "io/weight_store.h"
#include "kernels/matmul.h"
#include "models/clip_text.h"
#include "models/nn.h"
#include "models/t5_encoder.h"
#include "tensor/convert.h"

namespace {

using namespace flux;
using Tensors = std::vector<std::pair<std::string, Tensor>>;

double median_seconds(int reps, const std::function<void()>& fn) {
  fn();  // warm-up: primitive creation, weight reorders, page faults
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Random N(0, std) values in `dtype` (bf16 or f32).
Tensor random_tensor(DType dtype, const Shape& shape, float std, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> dist(0.0f, std);
  Tensor t = Tensor::empty(dtype, shape);
  const int64_t n = t.numel();
  if (dtype == DType::f32) {
    for (int64_t i = 0; i < n; ++i) t.mut<float>()[i] = dist(rng);
  } else {
    auto* p = static_cast<uint16_t*>(t.raw_mut());
    for (int64_t i = 0; i < n; ++i) p[i] = f32_to_bf16(dist(rng));
  }
  return t;
}

Tensor ones(int64_t n) { return Tensor::from_f32({n}, std::vector<float>(static_cast<size_t>(n), 1.0f)); }

// One matmul [m, k] x [k, n] in oneDNN, bf16 or f32 inputs, f32 output, weights in the primitive's layout.
struct DnnlMatmul {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::matmul prim;
  dnnl::memory src, wei, dst;

  DnnlMatmul(int64_t m, int64_t k, int64_t n, DType dtype) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt in = dtype == DType::bf16 ? dt::bf16 : dt::f32;
    const dnnl::memory::desc src_md({m, k}, in, tag::ab), dst_md({m, n}, dt::f32, tag::ab);
    const dnnl::memory::desc any_wei({k, n}, in, tag::any);
    const auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, any_wei, dst_md), engine);
    prim = dnnl::matmul(pd);
    src = dnnl::memory(src_md, engine);
    dst = dnnl::memory(dst_md, engine);
    wei = dnnl::memory(pd.weights_desc(), engine);
    dnnl::memory plain({{k, n}, in, tag::ab}, engine);
    const Tensor w = random_tensor(dtype, {k, n}, 0.02f, 1);
    std::copy_n(static_cast<const uint8_t*>(w.raw()), w.nbytes(), static_cast<uint8_t*>(plain.get_data_handle()));
    dnnl::reorder(plain, wei).execute(stream, plain, wei);
    const Tensor x = random_tensor(dtype, {m, k}, 1.0f, 2);
    std::copy_n(static_cast<const uint8_t*>(x.raw()), x.nbytes(), static_cast<uint8_t*>(src.get_data_handle()));
    stream.wait();
  }
  void run() {
    prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    stream.wait();
  }
};

struct MatmulShape {
  int64_t k, n, count;  // count: how many of this shape per layer
};

// The layer's matmuls in oneDNN: total seconds per layer.
double dnnl_layer_seconds(int64_t m, const std::vector<MatmulShape>& shapes, DType dtype, int reps) {
  double total = 0;
  for (const MatmulShape& s : shapes) {
    DnnlMatmul mm(m, s.k, s.n, dtype);
    total += s.count * median_seconds(reps, [&] { mm.run(); });
  }
  return total;
}

// kernels::Linear on one [m, k] x [n, k]^T bf16 product: seconds.
double linear_seconds(int64_t m, int64_t k, int64_t n, int reps) {
  const kernels::Linear linear(random_tensor(DType::bf16, {n, k}, 0.02f, 3), Tensor());
  const Tensor x = random_tensor(DType::f32, {m, k}, 1.0f, 4);
  std::vector<float> y(static_cast<size_t>(m * n));
  return median_seconds(reps, [&] { linear.forward(x.data<float>(), m, y.data()); });
}

struct Report {
  const char* name;
  int64_t tokens, layers;
  double layer_s, layer_flop, dnnl_bf16_s, dnnl_f32_s, matmul_flop, big_linear_s, big_flop;
};

// The bf16 baseline, or NaN where oneDNN has no bf16 matmul for this CPU (AVX2-only machines).
double bf16_layer_seconds(int64_t len, const std::vector<MatmulShape>& shapes, int reps) {
  try {
    return dnnl_layer_seconds(len, shapes, DType::bf16, reps);
  } catch (const dnnl::error&) {
    return std::nan("");
  }
}

void print(const Report& r) {
  std::printf("%s, 1 layer, %lld tokens: %.1f ms, %.1f GFLOP/s (%.2f GFLOP, %.0f%% in matmuls)\n", r.name,
              static_cast<long long>(r.tokens), r.layer_s * 1e3, r.layer_flop / r.layer_s * 1e-9, r.layer_flop * 1e-9,
              100.0 * r.matmul_flop / r.layer_flop);
  std::printf("  full encoder (%lld layers) extrapolated: %.2f s\n", static_cast<long long>(r.layers),
              r.layer_s * static_cast<double>(r.layers));
  for (const auto& [name, sec] : {std::pair{"bf16", r.dnnl_bf16_s}, std::pair{"f32", r.dnnl_f32_s}}) {
    if (std::isnan(sec)) {
      std::printf("  baseline oneDNN %s matmuls: not available on this CPU\n", name);
      continue;
    }
    std::printf("  baseline oneDNN %s matmuls alone (same shapes): %.1f ms, %.1f GFLOP/s -> layer/baseline %.2fx\n",
                name, sec * 1e3, r.matmul_flop / sec * 1e-9, r.layer_s / sec);
  }
  std::printf("  kernels::Linear on the biggest matmul: %.2f ms, %.1f GFLOP/s\n", r.big_linear_s * 1e3,
              r.big_flop / r.big_linear_s * 1e-9);
}

Report bench_t5(const std::string& dir, int reps) {
  T5Config c;  // T5-XXL widths, one block, a small vocabulary (the embedding lookup is not measured)
  c.vocab_size = 1024;
  c.num_layers = 1;
  const int64_t d = c.d_model, inner = c.num_heads * c.d_kv, ff = c.d_ff, len = 256;
  const std::string b = "encoder.block.0.layer.";
  Tensors t;
  uint64_t seed = 10;
  auto w = [&](const std::string& name, int64_t out, int64_t in) {
    t.emplace_back(name, random_tensor(DType::bf16, {out, in}, 1.0f / std::sqrt(static_cast<float>(in)), seed++));
  };
  t.emplace_back("shared.weight", random_tensor(DType::bf16, {c.vocab_size, d}, 1.0f, seed++));
  t.emplace_back(b + "0.SelfAttention.relative_attention_bias.weight",
                 random_tensor(DType::f32, {c.relative_attention_num_buckets, c.num_heads}, 1.0f, seed++));
  for (const char* p : {"q", "k", "v"}) w(b + "0.SelfAttention." + p + ".weight", inner, d);
  w(b + "0.SelfAttention.o.weight", d, inner);
  t.emplace_back(b + "0.layer_norm.weight", ones(d));
  w(b + "1.DenseReluDense.wi_0.weight", ff, d);
  w(b + "1.DenseReluDense.wi_1.weight", ff, d);
  w(b + "1.DenseReluDense.wo.weight", d, ff);
  t.emplace_back(b + "1.layer_norm.weight", ones(d));
  t.emplace_back("encoder.final_layer_norm.weight", ones(d));
  const std::string path = dir + "/t5_block.safetensors";
  write_safetensors(path, t);
  t.clear();

  WeightStore store = WeightStore::open(path);
  const T5Encoder model = T5Encoder::load(store, c);
  std::vector<int32_t> ids(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 37) % c.vocab_size);

  Report r{"T5-XXL", len, 24, 0, 0, 0, 0, 0, 0, 0};
  r.layer_s = median_seconds(reps, [&] { (void)model.forward(ids); });
  // The same layer bound at Precision::f32, bf16 (where the CPU has AVX512_BF16) and int8 (the T5 figure of the
  // int8 path): time, the 24-layer extrapolation, and the rms relative error of the layer's output against f32
  // products (bf16's is the yardstick for int8's).
  Tensor f32_out;
  std::vector<kernels::Precision> precisions = {kernels::Precision::f32, kernels::Precision::int8};
  if (cpu_features().avx512_bf16) precisions.insert(precisions.begin() + 1, kernels::Precision::bf16);
  for (kernels::Precision prec : precisions) {
    kernels::set_default_precision(prec);
    nn::detail::set_int8_everywhere(true);  // the pipeline keeps the text encoders out of int8 (nn.h): measure why
    const T5Encoder m = T5Encoder::load(store, c);
    nn::detail::set_int8_everywhere(false);
    kernels::set_default_precision(kernels::Precision::automatic);
    const double sec = median_seconds(reps, [&] { (void)m.forward(ids); });
    const Tensor out = m.forward(ids).to(DType::f32);
    if (prec == kernels::Precision::f32) f32_out = out;
    double d2 = 0, o2 = 0;
    for (int64_t i = 0; i < out.numel(); ++i) {
      const double g = out.data<float>()[i], w = f32_out.data<float>()[i];
      d2 += (g - w) * (g - w);
      o2 += w * w;
    }
    std::printf("T5-XXL layer, %s products: %.1f ms, full encoder (24 layers) extrapolated %.2f s, rms rel error "
                "vs f32 %.2e\n",
                kernels::precision_name(prec), sec * 1e3, 24 * sec, std::sqrt(d2 / o2));
  }
  r.matmul_flop = 2.0 * len * (4.0 * d * inner + 3.0 * d * ff);
  r.layer_flop = r.matmul_flop + 4.0 * len * len * inner;  // + q.k and p.v
  const std::vector<MatmulShape> shapes = {{d, inner, 3}, {inner, d, 1}, {d, ff, 2}, {ff, d, 1}};
  r.dnnl_bf16_s = bf16_layer_seconds(len, shapes, reps);
  r.dnnl_f32_s = dnnl_layer_seconds(len, shapes, DType::f32, reps);
  r.big_linear_s = linear_seconds(len, d, ff, reps);
  r.big_flop = 2.0 * len * d * ff;
  std::filesystem::remove(path);
  return r;
}

Report bench_clip(const std::string& dir, int reps) {
  ClipTextConfig c;  // CLIP-L widths, one layer, a small vocabulary
  c.vocab_size = 1024;
  c.num_hidden_layers = 1;
  const int64_t d = c.hidden_size, ff = c.intermediate_size, len = 77;
  const std::string l = "text_model.encoder.layers.0.";
  Tensors t;
  uint64_t seed = 100;
  auto linear = [&](const std::string& prefix, int64_t out, int64_t in) {
    t.emplace_back(prefix + "weight",
                   random_tensor(DType::bf16, {out, in}, 1.0f / std::sqrt(static_cast<float>(in)), seed++));
    t.emplace_back(prefix + "bias", random_tensor(DType::f32, {out}, 0.02f, seed++));
  };
  auto norm = [&](const std::string& prefix) {
    t.emplace_back(prefix + "weight", ones(d));
    t.emplace_back(prefix + "bias", Tensor::zeros(DType::f32, {d}));
  };
  t.emplace_back("text_model.embeddings.token_embedding.weight", random_tensor(DType::bf16, {c.vocab_size, d}, 1, 1));
  t.emplace_back("text_model.embeddings.position_embedding.weight", random_tensor(DType::bf16, {len, d}, 1, 2));
  norm(l + "layer_norm1.");
  for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(l + "self_attn." + p + ".", d, d);
  norm(l + "layer_norm2.");
  linear(l + "mlp.fc1.", ff, d);
  linear(l + "mlp.fc2.", d, ff);
  norm("text_model.final_layer_norm.");
  const std::string path = dir + "/clip_layer.safetensors";
  write_safetensors(path, t);
  t.clear();

  WeightStore store = WeightStore::open(path);
  const ClipTextModel model = ClipTextModel::load(store, c);
  std::vector<int32_t> ids(static_cast<size_t>(len), 1023);
  for (int64_t i = 0; i < 10; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i * 17);

  Report r{"CLIP-L", len, 12, 0, 0, 0, 0, 0, 0, 0};
  r.layer_s = median_seconds(reps, [&] { (void)model.forward(ids, 9); });
  r.matmul_flop = 2.0 * len * (4.0 * d * d + 2.0 * d * ff);
  r.layer_flop = r.matmul_flop + 4.0 * len * len * d;  // full q.k and p.v (the causal half is skippable)
  const std::vector<MatmulShape> shapes = {{d, d, 4}, {d, ff, 1}, {ff, d, 1}};
  r.dnnl_bf16_s = bf16_layer_seconds(len, shapes, reps * 4);
  r.dnnl_f32_s = dnnl_layer_seconds(len, shapes, DType::f32, reps * 4);
  r.big_linear_s = linear_seconds(len, d, ff, reps * 4);
  r.big_flop = 2.0 * len * d * ff;
  std::filesystem::remove(path);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    const std::string dir = std::filesystem::temp_directory_path() / "fluxcpp-bench-text-encoders";
    std::filesystem::create_directories(dir);
    std::printf("threads %d, cpu: %s, bf16 weights, median of %d runs\n", default_pool().n_threads(),
                cpu_features().describe().c_str(), reps);
    print(bench_clip(dir, reps));
    print(bench_t5(dir, reps));
    std::filesystem::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
