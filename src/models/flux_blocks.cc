// The FLUX.1 transformer's modules (BFL flux/modules/layers.py and flux/math.py). Each forward reads like the
// reference; the row loops around the kernels only split work over the thread pool.
#include "models/flux_blocks.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "base/thread_pool.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "models/lora_runtime.h"

namespace flux::transformer {
namespace {

constexpr float kNormEps = 1e-6f;  // LayerNorm (no affine) and QK RMSNorm

// fn(begin, end) over row ranges of [0, rows), in parallel.
template <typename Fn>
void for_rows(int64_t rows, Fn&& fn, int64_t grain = 8) {
  parallel_for(
      rows, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

// Runs fn, adding its seconds to ws.timings->*field when the workspace collects timings (bench_flux_block).
template <typename Fn>
void timed(Workspace& ws, double Workspace::Timings::* field, Fn&& fn) {
  if (ws.timings == nullptr) return fn();
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  ws.timings->*field += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// y: [m, out] = x: [m, in] W^T + b (+ the run-time LoRA side products of this forward, if any)
void product(const nn::Linear& l, const float* x, int64_t m, float* y, Workspace& ws) {
  timed(ws, &Workspace::Timings::products, [&] {
    l.op.forward(x, m, y);
    apply_lora(ws.loras, l, x, m, y);
  });
}

// A Modulation's output into out: F32 [multiplier * hidden] (with the run-time LoRA side products, if any).
void modulate(const Modulation& mod, const Tensor& silu_vec, float* out, const Workspace& ws) {
  mod.forward(silu_vec, out);
  apply_lora(ws.loras, mod.lin, silu_vec.data<float>(), 1, out);
}

// One stream's qkv rows (K H D: q | k | v, each heads x head_dim; row stride `stride`) -> ws.q/k/v
// [H, n_rows, D] at rows [offset, offset + n): q and k through QKNorm and RoPE (BFL math.py apply_rope) in the
// pass that writes them, v copied.
void write_qkv(const float* qkv, int64_t n, int64_t stride, int64_t offset, const QKNorm& norm, int64_t heads,
               int64_t head_dim, const PositionEmbedding& pe, Workspace& ws) {
  const int64_t hidden = heads * head_dim, half = head_dim / 2, n_rows = ws.n_rows;
  const float* cos = pe.cos.data<float>() + offset * half;
  const float* sin = pe.sin.data<float>() + offset * half;
  kernels::rms_norm_rope(qkv, stride, n, heads, head_dim, norm.query_norm.weight.data<float>(), kNormEps, cos, sin,
                         ws.q.mut<float>() + offset * head_dim, n_rows);
  kernels::rms_norm_rope(qkv + hidden, stride, n, heads, head_dim, norm.key_norm.weight.data<float>(), kNormEps, cos,
                         sin, ws.k.mut<float>() + offset * head_dim, n_rows);
  float* v = ws.v.mut<float>();
  for_rows(n, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l)
      for (int64_t h = 0; h < heads; ++h) {
        std::memcpy(v + (h * n_rows + offset + l) * head_dim, qkv + l * stride + 2 * hidden + h * head_dim,
                    sizeof(float) * static_cast<size_t>(head_dim));
      }
  });
}

// softmax(q k^T / sqrt(D)) v over the whole sequence -> ws.attn [n_rows, H*D]; products in bf16 if asked.
void attention(int64_t heads, int64_t head_dim, bool bf16, Workspace& ws) {
  kernels::AttentionParams p;
  p.n_heads = heads;
  p.len_q = p.len_k = ws.n_rows;
  p.head_dim = head_dim;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  p.bf16 = bf16;
  timed(ws, &Workspace::Timings::attention, [&] {
    kernels::attention(p, ws.q.data<float>(), ws.k.data<float>(), ws.v.data<float>(), ws.attn.mut<float>());
  });
}

}  // namespace

bool FluxWeights::attention_in_bf16() {
  if (!attention_in_bf16_) {
    bool narrow = false;  // BFL "double_blocks.N." / "single_blocks.N.", diffusers "..transformer_blocks.N."
    for (const std::string& name : store_.names()) {
      if (name.find("blocks.") == std::string::npos) continue;
      const Tensor t = store_.get(name);
      if (t.ndim() == 2 && t.dtype() != DType::f32) {
        narrow = true;
        break;
      }
    }
    attention_in_bf16_ = narrow && kernels::linear_compute_dtype() != DType::f32;
  }
  return *attention_in_bf16_;
}

// ---- positions and timesteps (BFL flux/math.py rope, flux/modules/layers.py EmbedND, timestep_embedding) ----

PositionEmbedding EmbedND::forward(const Tensor& ids) const {
  FLUX_CHECK(ids.dtype() == DType::f32 && ids.ndim() == 2 && ids.dim(1) == 3, "EmbedND: expected ids f32 [L, 3], got ",
             ids.describe());
  const int64_t n = ids.dim(0);
  int64_t half = 0;
  for (int64_t d : axes_dim) half += d / 2;
  PositionEmbedding pe{Tensor::empty(DType::f32, {n, half}), Tensor::empty(DType::f32, {n, half})};
  float* cos = pe.cos.mut<float>();
  float* sin = pe.sin.mut<float>();
  const float* id = ids.data<float>();
  for (int64_t l = 0; l < n; ++l) {
    int64_t j_out = 0;
    for (size_t axis = 0; axis < axes_dim.size(); ++axis) {
      const int64_t dim = axes_dim[axis];
      for (int64_t j = 0; j < dim / 2; ++j, ++j_out) {
        // omega in float64 as the reference, the angle in float32 (its einsum runs on the float32 ids).
        const auto omega = static_cast<float>(1.0 / std::pow(static_cast<double>(theta), 2.0 * j / dim));
        const float angle = id[l * 3 + static_cast<int64_t>(axis)] * omega;
        cos[l * half + j_out] = static_cast<float>(std::cos(static_cast<double>(angle)));
        sin[l * half + j_out] = static_cast<float>(std::sin(static_cast<double>(angle)));
      }
    }
  }
  return pe;
}

Tensor timestep_embedding(float t, int64_t dim) {
  // float32 throughout as torch: freqs = exp(-ln(10000) * k / half), args = (1000 t) * freqs, [cos, sin].
  const int64_t half = dim / 2;
  Tensor emb = Tensor::zeros(DType::f32, {1, dim});
  float* e = emb.mut<float>();
  const float t_scaled = 1000.0f * t;
  const auto neg_log = static_cast<float>(-std::log(10000.0));
  for (int64_t k = 0; k < half; ++k) {
    const float exponent = neg_log * static_cast<float>(k) / static_cast<float>(half);
    const auto freq = static_cast<float>(std::exp(static_cast<double>(exponent)));
    const double arg = static_cast<double>(t_scaled * freq);
    e[k] = static_cast<float>(std::cos(arg));
    e[half + k] = static_cast<float>(std::sin(arg));
  }
  return emb;
}

Workspace::Workspace(const FluxParams& p, int64_t n_txt_, int64_t n_img_)
    : n_txt(n_txt_), n_img(n_img_), n_rows(n_txt_ + n_img_) {
  const int64_t hidden = p.hidden_size, mlp = static_cast<int64_t>(static_cast<float>(hidden) * p.mlp_ratio);
  const int64_t head_dim = hidden / p.num_heads;
  x = Tensor::empty(DType::f32, {n_rows, hidden});
  mod = Tensor::empty(DType::f32, {2, 6 * hidden});
  x_mod = Tensor::empty(DType::f32, {n_rows, hidden});
  wide = Tensor::empty(DType::f32, {n_rows, 3 * hidden + mlp});
  q = Tensor::empty(DType::f32, {p.num_heads, n_rows, head_dim});
  k = Tensor::empty(DType::f32, {p.num_heads, n_rows, head_dim});
  v = Tensor::empty(DType::f32, {p.num_heads, n_rows, head_dim});
  attn = Tensor::empty(DType::f32, {n_rows, hidden});
  cat = Tensor::empty(DType::f32, {n_rows, hidden + mlp});
  out = Tensor::empty(DType::f32, {n_rows, hidden});
}

size_t Workspace::bytes() const {
  size_t total = 0;
  for (const Tensor* t : {&x, &mod, &x_mod, &wide, &q, &k, &v, &attn, &cat, &out}) total += t->nbytes();
  return total;
}

// ---- modules ----

MLPEmbedder MLPEmbedder::bind(FluxWeights& w, const std::string& prefix, int64_t in, int64_t hidden) {
  return {w.linear(prefix + "in_layer.", in, hidden), w.linear(prefix + "out_layer.", hidden, hidden)};
}

Tensor MLPEmbedder::forward(const Tensor& x, const LoraSet* loras) const {
  const auto run = [&](const nn::Linear& l, const Tensor& in) {
    Tensor y = l.forward(in);
    apply_lora(loras, l, in.data<float>(), in.numel() / l.op.in_features(), y.mut<float>());
    return y;
  };
  return run(out_layer, nn::silu(run(in_layer, x)));
}

Modulation Modulation::bind(FluxWeights& w, const std::string& prefix, int64_t hidden, bool is_double) {
  Modulation m;
  m.multiplier = is_double ? 6 : 3;
  m.hidden = hidden;
  m.lin = w.linear(prefix + "lin.", hidden, m.multiplier * hidden);
  return m;
}

ModulationOut Modulation::chunk(const float* out, int index) const {
  const float* base = out + static_cast<int64_t>(index) * 3 * hidden;
  return {base, base + hidden, base + 2 * hidden};  // (shift, scale, gate)
}

QKNorm QKNorm::bind(FluxWeights& w, const std::string& prefix, int64_t head_dim) {
  return {w.rms_norm(prefix + "query_norm.scale", head_dim, kNormEps),
          w.rms_norm(prefix + "key_norm.scale", head_dim, kNormEps)};
}

SelfAttention SelfAttention::bind(FluxWeights& w, const std::string& prefix, const FluxParams& p) {
  const int64_t hidden = p.hidden_size;
  return {w.linear(prefix + "qkv.", hidden, 3 * hidden, p.qkv_bias),
          QKNorm::bind(w, prefix + "norm.", hidden / p.num_heads), w.linear(prefix + "proj.", hidden, hidden)};
}

MLP MLP::bind(FluxWeights& w, const std::string& prefix, int64_t hidden, int64_t mlp) {
  return {w.linear(prefix + "0.", hidden, mlp), w.linear(prefix + "2.", mlp, hidden)};
}

DoubleStreamBlock DoubleStreamBlock::bind(FluxWeights& w, const std::string& prefix, const FluxParams& p) {
  DoubleStreamBlock b;
  b.hidden = p.hidden_size;
  b.num_heads = p.num_heads;
  b.mlp_hidden = static_cast<int64_t>(static_cast<float>(p.hidden_size) * p.mlp_ratio);
  b.attention_bf16 = w.attention_in_bf16();
  b.img_mod = Modulation::bind(w, prefix + "img_mod.", b.hidden, true);
  b.img_attn = SelfAttention::bind(w, prefix + "img_attn.", p);
  b.img_mlp = MLP::bind(w, prefix + "img_mlp.", b.hidden, b.mlp_hidden);
  b.txt_mod = Modulation::bind(w, prefix + "txt_mod.", b.hidden, true);
  b.txt_attn = SelfAttention::bind(w, prefix + "txt_attn.", p);
  b.txt_mlp = MLP::bind(w, prefix + "txt_mlp.", b.hidden, b.mlp_hidden);
  return b;
}

void DoubleStreamBlock::forward(float* x, const Tensor& silu_vec, const PositionEmbedding& pe, Workspace& ws) const {
  const int64_t head_dim = hidden / num_heads, n_txt = ws.n_txt, n_img = ws.n_img;
  float* txt = x;                   // [n_txt, hidden]
  float* img = x + n_txt * hidden;  // [n_img, hidden]
  float* mods = ws.mod.mut<float>();  // [2, 6 hidden]: img_mod, txt_mod
  timed(ws, &Workspace::Timings::products, [&] {
    modulate(img_mod, silu_vec, mods, ws);
    modulate(txt_mod, silu_vec, mods + 6 * hidden, ws);
  });
  const ModulationOut img_mod1 = img_mod.chunk(mods, 0), img_mod2 = img_mod.chunk(mods, 1);
  const ModulationOut txt_mod1 = txt_mod.chunk(mods + 6 * hidden, 0), txt_mod2 = txt_mod.chunk(mods + 6 * hidden, 1);
  float* x_mod = ws.x_mod.mut<float>();  // [n_rows, hidden], txt rows first
  float* qkv = ws.wide.mut<float>();     // as [n_rows, 3 hidden]
  float* out = ws.out.mut<float>();      // [n_rows, hidden]
  const float* attn = ws.attn.data<float>();

  // Attention over cat(txt, img): each stream's own qkv projection and QKNorm, one joint softmax.
  // x_mod = (1 + scale1) * LN(x) + shift1
  kernels::layer_norm_modulate(txt, x_mod, n_txt, hidden, txt_mod1.shift, txt_mod1.scale, kNormEps);
  kernels::layer_norm_modulate(img, x_mod + n_txt * hidden, n_img, hidden, img_mod1.shift, img_mod1.scale, kNormEps);
  product(txt_attn.qkv, x_mod, n_txt, qkv, ws);
  product(img_attn.qkv, x_mod + n_txt * hidden, n_img, qkv + n_txt * 3 * hidden, ws);
  write_qkv(qkv, n_txt, 3 * hidden, 0, txt_attn.norm, num_heads, head_dim, pe, ws);
  write_qkv(qkv + n_txt * 3 * hidden, n_img, 3 * hidden, n_txt, img_attn.norm, num_heads, head_dim, pe, ws);
  attention(num_heads, head_dim, attention_bf16, ws);  // [n_rows, hidden]
  product(txt_attn.proj, attn, n_txt, out, ws);
  product(img_attn.proj, attn + n_txt * hidden, n_img, out + n_txt * hidden, ws);
  // x += gate1 * proj(attn), and in the same pass the MLP's input x_mod = (1 + scale2) * LN(x) + shift2
  kernels::add_gated_layer_norm_modulate(txt, out, txt_mod1.gate, x_mod, n_txt, hidden, txt_mod2.shift,
                                         txt_mod2.scale, kNormEps);
  kernels::add_gated_layer_norm_modulate(img, out + n_txt * hidden, img_mod1.gate, x_mod + n_txt * hidden, n_img,
                                         hidden, img_mod2.shift, img_mod2.scale, kNormEps);

  // MLPs: x += gate2 * fc2(gelu(fc1(x_mod)))
  float* mlp = ws.wide.mut<float>();  // as [n, mlp_hidden]
  const auto run_mlp = [&](float* s, const float* s_mod, int64_t n, const MLP& m, const float* gate) {
    product(m.fc1, s_mod, n, mlp, ws);
    kernels::gelu_tanh(mlp, mlp, n * mlp_hidden);
    product(m.fc2, mlp, n, out, ws);
    kernels::add_gated(s, out, gate, n, hidden);
  };
  run_mlp(img, x_mod + n_txt * hidden, n_img, img_mlp, img_mod2.gate);
  run_mlp(txt, x_mod, n_txt, txt_mlp, txt_mod2.gate);
}

SingleStreamBlock SingleStreamBlock::bind(FluxWeights& w, const std::string& prefix, const FluxParams& p) {
  SingleStreamBlock b;
  b.hidden = p.hidden_size;
  b.num_heads = p.num_heads;
  b.mlp_hidden = static_cast<int64_t>(static_cast<float>(p.hidden_size) * p.mlp_ratio);
  b.attention_bf16 = w.attention_in_bf16();
  b.linear1 = w.linear(prefix + "linear1.", b.hidden, 3 * b.hidden + b.mlp_hidden);
  b.linear2 = w.linear(prefix + "linear2.", b.hidden + b.mlp_hidden, b.hidden);
  b.norm = QKNorm::bind(w, prefix + "norm.", b.hidden / b.num_heads);
  b.modulation = Modulation::bind(w, prefix + "modulation.", b.hidden, false);
  return b;
}

void SingleStreamBlock::forward(float* x, const Tensor& silu_vec, const PositionEmbedding& pe, Workspace& ws) const {
  const int64_t head_dim = hidden / num_heads, n = ws.n_rows, width = 3 * hidden + mlp_hidden;
  float* mods = ws.mod.mut<float>();  // [3 hidden]
  timed(ws, &Workspace::Timings::products, [&] { modulate(modulation, silu_vec, mods, ws); });
  const ModulationOut mod = modulation.chunk(mods, 0);
  float* x_mod = ws.x_mod.mut<float>();
  float* lin1 = ws.wide.mut<float>();  // [n, 3 hidden + mlp]: qkv | mlp
  float* cat = ws.cat.mut<float>();    // [n, hidden + mlp]
  float* out = ws.out.mut<float>();

  kernels::layer_norm_modulate(x, x_mod, n, hidden, mod.shift, mod.scale, kNormEps);  // pre_norm, modulated
  product(linear1, x_mod, n, lin1, ws);
  write_qkv(lin1, n, width, 0, norm, num_heads, head_dim, pe, ws);
  attention(num_heads, head_dim, attention_bf16, ws);
  const float* attn = ws.attn.data<float>();
  for_rows(n, [&](int64_t b, int64_t e) {  // cat(attn, gelu_tanh(mlp))
    for (int64_t l = b; l < e; ++l) {
      std::memcpy(cat + l * (hidden + mlp_hidden), attn + l * hidden, sizeof(float) * static_cast<size_t>(hidden));
      kernels::gelu_tanh(lin1 + l * width + 3 * hidden, cat + l * (hidden + mlp_hidden) + hidden, mlp_hidden);
    }
  });
  product(linear2, cat, n, out, ws);
  kernels::add_gated(x, out, mod.gate, n, hidden);
}

LastLayer LastLayer::bind(FluxWeights& w, const std::string& prefix, int64_t hidden, int64_t out_channels) {
  LastLayer l;
  l.hidden = hidden;
  l.adaLN_modulation = w.linear(prefix + "adaLN_modulation.1.", hidden, 2 * hidden);
  l.linear = w.linear(prefix + "linear.", hidden, out_channels);
  return l;
}

Tensor LastLayer::forward(const float* x, int64_t n, const Tensor& silu_vec, Workspace& ws) const {
  float* mod = ws.mod.mut<float>();  // [2 hidden]: shift, scale
  adaLN_modulation.op.forward(silu_vec.data<float>(), 1, mod);
  apply_lora(ws.loras, adaLN_modulation, silu_vec.data<float>(), 1, mod);
  float* normed = ws.x_mod.mut<float>();  // [n, hidden]
  kernels::layer_norm_modulate(x, normed, n, hidden, mod, mod + hidden, kNormEps);  // norm_final
  Tensor out = Tensor::empty(DType::f32, {n, linear.op.out_features()});
  linear.op.forward(normed, n, out.mut<float>());
  apply_lora(ws.loras, linear, normed, n, out.mut<float>());
  return out;  // [n, out_channels]
}

}  // namespace flux::transformer
