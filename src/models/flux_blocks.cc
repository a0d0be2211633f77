// The FLUX.1 transformer's modules (BFL flux/modules/layers.py and flux/math.py). Each forward reads like the
// reference; the row loops around the kernels only split work over the thread pool.
#include "models/flux_blocks.h"

#include <cmath>
#include <cstring>

#include "base/thread_pool.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/norm.h"

namespace flux::transformer {
namespace {

constexpr float kNormEps = 1e-6f;  // LayerNorm (no affine) and QK RMSNorm

// fn(begin, end) over row ranges of [0, rows), in parallel.
template <typename Fn>
void for_rows(int64_t rows, Fn&& fn, int64_t grain = 8) {
  parallel_for(
      rows, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

// y = (1 + scale) * LayerNorm(x) + shift, rows of length dim (BFL: img_norm1 / img_mod1 etc.)
void norm_modulate(const float* x, float* y, int64_t rows, int64_t dim, const ModulationOut& m) {
  for_rows(rows, [&](int64_t b, int64_t e) {
    kernels::layer_norm(x + b * dim, y + b * dim, e - b, dim, nullptr, nullptr, kNormEps);
    kernels::modulate(y + b * dim, y + b * dim, e - b, dim, m.shift, m.scale);
  });
}

// x += gate * y over rows of length dim.
void add_gated(float* x, const float* y, const float* gate, int64_t rows, int64_t dim) {
  for_rows(rows, [&](int64_t b, int64_t e) { kernels::add_gated(x + b * dim, y + b * dim, gate, e - b, dim); });
}

void gelu_rows(float* x, int64_t rows, int64_t dim) {
  for_rows(rows, [&](int64_t b, int64_t e) { kernels::gelu_tanh(x + b * dim, x + b * dim, (e - b) * dim); });
}

// One stream's qkv rows (K H D: q | k | v, each heads x head_dim) -> ws.q/k/v [H, n_rows, D] at rows
// [offset, offset + n): QKNorm on q and k, then RoPE on adjacent pairs (BFL math.py apply_rope).
void split_heads(const float* qkv, int64_t n, int64_t stride, int64_t offset, const QKNorm& norm, int64_t heads,
                 int64_t head_dim, const PositionEmbedding& pe, Workspace& ws) {
  const int64_t hidden = heads * head_dim, half = head_dim / 2, n_rows = ws.n_rows;
  float* q = ws.q.mut<float>();
  float* k = ws.k.mut<float>();
  float* v = ws.v.mut<float>();
  const float* cos = pe.cos.data<float>();
  const float* sin = pe.sin.data<float>();
  const float* q_scale = norm.query_norm.weight.data<float>();
  const float* k_scale = norm.key_norm.weight.data<float>();
  for_rows(n, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      const float* row = qkv + l * stride;
      const int64_t pos = offset + l;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t at = (h * n_rows + pos) * head_dim;  // [H, n_rows, D]
        kernels::rms_norm(row + h * head_dim, q + at, 1, head_dim, q_scale, kNormEps);
        kernels::rms_norm(row + hidden + h * head_dim, k + at, 1, head_dim, k_scale, kNormEps);
        std::memcpy(v + at, row + 2 * hidden + h * head_dim, sizeof(float) * static_cast<size_t>(head_dim));
        kernels::rope(q + at, 1, 1, head_dim, cos + pos * half, sin + pos * half);
        kernels::rope(k + at, 1, 1, head_dim, cos + pos * half, sin + pos * half);
      }
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
  kernels::attention(p, ws.q.data<float>(), ws.k.data<float>(), ws.v.data<float>(), ws.attn.mut<float>());
}

}  // namespace

bool FluxWeights::products_in_bf16() {
  if (!products_in_bf16_) {
    bool narrow = false;  // BFL "double_blocks.N." / "single_blocks.N.", diffusers "..transformer_blocks.N."
    for (const std::string& name : store_.names()) {
      if (name.find("blocks.") == std::string::npos) continue;
      const Tensor t = store_.get(name);
      if (t.ndim() == 2 && t.dtype() != DType::f32) {
        narrow = true;
        break;
      }
    }
    products_in_bf16_ = narrow && kernels::linear_compute_dtype() == DType::bf16;
  }
  return *products_in_bf16_;
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
  x_mod = Tensor::empty(DType::f32, {n_rows, hidden});
  wide = Tensor::empty(DType::f32, {n_rows, 3 * hidden + mlp});
  q = Tensor::empty(DType::f32, {p.num_heads, n_rows, head_dim});
  k = Tensor::empty(DType::f32, {p.num_heads, n_rows, head_dim});
  v = Tensor::empty(DType::f32, {p.num_heads, n_rows, head_dim});
  attn = Tensor::empty(DType::f32, {n_rows, hidden});
  cat = Tensor::empty(DType::f32, {n_rows, hidden + mlp});
  out = Tensor::empty(DType::f32, {n_rows, hidden});
}

// ---- modules ----

MLPEmbedder MLPEmbedder::bind(FluxWeights& w, const std::string& prefix, int64_t in, int64_t hidden) {
  return {w.linear(prefix + "in_layer.", in, hidden), w.linear(prefix + "out_layer.", hidden, hidden)};
}

Tensor MLPEmbedder::forward(const Tensor& x) const { return out_layer.forward(nn::silu(in_layer.forward(x))); }

Modulation Modulation::bind(FluxWeights& w, const std::string& prefix, int64_t hidden, bool is_double) {
  Modulation m;
  m.multiplier = is_double ? 6 : 3;
  m.hidden = hidden;
  m.lin = w.linear(prefix + "lin.", hidden, m.multiplier * hidden);
  return m;
}

ModulationOut Modulation::chunk(const Tensor& out, int index) const {
  const float* base = out.data<float>() + static_cast<int64_t>(index) * 3 * hidden;
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
  b.attention_bf16 = w.products_in_bf16();
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
  const Tensor img_m = img_mod.forward(silu_vec), txt_m = txt_mod.forward(silu_vec);
  const ModulationOut img_mod1 = img_mod.chunk(img_m, 0), img_mod2 = img_mod.chunk(img_m, 1);
  const ModulationOut txt_mod1 = txt_mod.chunk(txt_m, 0), txt_mod2 = txt_mod.chunk(txt_m, 1);
  float* x_mod = ws.x_mod.mut<float>();  // [n_rows, hidden], txt rows first
  float* qkv = ws.wide.mut<float>();     // as [n_rows, 3 hidden]
  float* out = ws.out.mut<float>();      // [n_rows, hidden]
  const float* attn = ws.attn.data<float>();

  // Attention over cat(txt, img): each stream's own qkv projection and QKNorm, one joint softmax.
  norm_modulate(txt, x_mod, n_txt, hidden, txt_mod1);
  norm_modulate(img, x_mod + n_txt * hidden, n_img, hidden, img_mod1);
  txt_attn.qkv.op.forward(x_mod, n_txt, qkv);
  img_attn.qkv.op.forward(x_mod + n_txt * hidden, n_img, qkv + n_txt * 3 * hidden);
  split_heads(qkv, n_txt, 3 * hidden, 0, txt_attn.norm, num_heads, head_dim, pe, ws);
  split_heads(qkv + n_txt * 3 * hidden, n_img, 3 * hidden, n_txt, img_attn.norm, num_heads, head_dim, pe, ws);
  attention(num_heads, head_dim, attention_bf16, ws);  // [n_rows, hidden]
  txt_attn.proj.op.forward(attn, n_txt, out);
  img_attn.proj.op.forward(attn + n_txt * hidden, n_img, out + n_txt * hidden);
  add_gated(txt, out, txt_mod1.gate, n_txt, hidden);
  add_gated(img, out + n_txt * hidden, img_mod1.gate, n_img, hidden);

  // MLPs: x += gate * fc2(gelu(fc1((1 + scale) * LN(x) + shift)))
  float* mlp = ws.wide.mut<float>();  // as [n, mlp_hidden]
  const auto run_mlp = [&](float* s, int64_t n, const MLP& m, const ModulationOut& mod) {
    norm_modulate(s, x_mod, n, hidden, mod);
    m.fc1.op.forward(x_mod, n, mlp);
    gelu_rows(mlp, n, mlp_hidden);
    m.fc2.op.forward(mlp, n, out);
    add_gated(s, out, mod.gate, n, hidden);
  };
  run_mlp(img, n_img, img_mlp, img_mod2);
  run_mlp(txt, n_txt, txt_mlp, txt_mod2);
}

SingleStreamBlock SingleStreamBlock::bind(FluxWeights& w, const std::string& prefix, const FluxParams& p) {
  SingleStreamBlock b;
  b.hidden = p.hidden_size;
  b.num_heads = p.num_heads;
  b.mlp_hidden = static_cast<int64_t>(static_cast<float>(p.hidden_size) * p.mlp_ratio);
  b.attention_bf16 = w.products_in_bf16();
  b.linear1 = w.linear(prefix + "linear1.", b.hidden, 3 * b.hidden + b.mlp_hidden);
  b.linear2 = w.linear(prefix + "linear2.", b.hidden + b.mlp_hidden, b.hidden);
  b.norm = QKNorm::bind(w, prefix + "norm.", b.hidden / b.num_heads);
  b.modulation = Modulation::bind(w, prefix + "modulation.", b.hidden, false);
  return b;
}

void SingleStreamBlock::forward(float* x, const Tensor& silu_vec, const PositionEmbedding& pe, Workspace& ws) const {
  const int64_t head_dim = hidden / num_heads, n = ws.n_rows, width = 3 * hidden + mlp_hidden;
  const Tensor mod_out = modulation.forward(silu_vec);
  const ModulationOut mod = modulation.chunk(mod_out, 0);
  float* x_mod = ws.x_mod.mut<float>();
  float* lin1 = ws.wide.mut<float>();  // [n, 3 hidden + mlp]: qkv | mlp
  float* cat = ws.cat.mut<float>();    // [n, hidden + mlp]
  float* out = ws.out.mut<float>();

  norm_modulate(x, x_mod, n, hidden, mod);  // pre_norm
  linear1.op.forward(x_mod, n, lin1);
  split_heads(lin1, n, width, 0, norm, num_heads, head_dim, pe, ws);
  attention(num_heads, head_dim, attention_bf16, ws);
  const float* attn = ws.attn.data<float>();
  for_rows(n, [&](int64_t b, int64_t e) {  // cat(attn, gelu_tanh(mlp))
    for (int64_t l = b; l < e; ++l) {
      std::memcpy(cat + l * (hidden + mlp_hidden), attn + l * hidden, sizeof(float) * static_cast<size_t>(hidden));
      kernels::gelu_tanh(lin1 + l * width + 3 * hidden, cat + l * (hidden + mlp_hidden) + hidden, mlp_hidden);
    }
  });
  linear2.op.forward(cat, n, out);
  add_gated(x, out, mod.gate, n, hidden);
}

LastLayer LastLayer::bind(FluxWeights& w, const std::string& prefix, int64_t hidden, int64_t out_channels) {
  LastLayer l;
  l.hidden = hidden;
  l.adaLN_modulation = w.linear(prefix + "adaLN_modulation.1.", hidden, 2 * hidden);
  l.linear = w.linear(prefix + "linear.", hidden, out_channels);
  return l;
}

Tensor LastLayer::forward(const float* x, int64_t n, const Tensor& silu_vec) const {
  const Tensor mod = adaLN_modulation.forward(silu_vec);  // [1, 2 hidden]: shift, scale
  const ModulationOut m{mod.data<float>(), mod.data<float>() + hidden, nullptr};
  Tensor normed = Tensor::empty(DType::f32, {n, hidden});
  norm_modulate(x, normed.mut<float>(), n, hidden, m);  // norm_final
  return linear.forward(normed);                        // [n, out_channels]
}

}  // namespace flux::transformer
