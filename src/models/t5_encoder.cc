// T5EncoderModel forward, following transformers/models/t5/modeling_t5.py (T5Stack, T5Block,
// T5LayerSelfAttention, T5Attention, T5LayerFF, T5DenseGatedActDense, T5LayerNorm). Activations are
// F32 [L, d_model] (one prompt, batch of 1). No attention mask: FLUX encodes the pad tokens too.
#include "models/t5_encoder.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "models/config.h"
#include "tensor/convert.h"

namespace flux {

namespace {

// ComfyUI's "scaled fp8" files store W = f8 weight * scale_weight (one f32 value). T5's linears have no bias,
// so the scale applies to the product: y = scale * (x W8^T), the weight stays f8 as stored.
struct ScaledLinear {
  nn::Linear linear;
  float scale = 1.0f;

  static ScaledLinear bind(WeightStore& store, const std::string& prefix, int64_t in, int64_t out) {
    ScaledLinear l;
    l.linear = nn::Linear::bind(store, prefix, in, out, /*bias=*/false);
    if (store.contains(prefix + "scale_weight")) {
      const Tensor s = store.require_f32(prefix + "scale_weight", {});
      if (s.defined()) {
        FLUX_CHECK(s.numel() == 1, "tensor ", prefix, "scale_weight: expected one value, got ", s.describe());
        l.scale = s.data<float>()[0];
      }
    }
    if (store.contains(prefix + "scale_input")) store.ignore(prefix + "scale_input");  // fp8 inputs: not used
    return l;
  }
  Tensor forward(const Tensor& x) const {
    Tensor y = linear.forward(x);
    if (scale != 1.0f) {
      float* p = y.mut<float>();
      for (int64_t i = 0; i < y.numel(); ++i) p[i] *= scale;
    }
    return y;
  }
};

}  // namespace

// T5Block of the encoder: layer.0 = T5LayerSelfAttention, layer.1 = T5LayerFF (checkpoint key segments).
struct T5Encoder::Block {
  // T5Attention: no bias, no 1/sqrt(d) scaling (folded into the weights at training), inner = heads * d_kv.
  struct T5Attention {
    ScaledLinear q, k, v;  // [inner, d_model]
    ScaledLinear o;        // [d_model, inner]
  };
  struct T5LayerSelfAttention {
    T5Attention SelfAttention;
    nn::RMSNorm layer_norm;
    // x + SelfAttention(layer_norm(x)); position_bias: [H, L, L]
    Tensor forward(const Tensor& x, const Tensor& position_bias, int64_t n_heads) const;
  };
  // T5DenseGatedActDense: wo(gelu_new(wi_0(x)) * wi_1(x))
  struct T5DenseGatedActDense {
    ScaledLinear wi_0, wi_1;  // [d_ff, d_model]
    ScaledLinear wo;          // [d_model, d_ff]
  };
  struct T5LayerFF {
    T5DenseGatedActDense DenseReluDense;
    nn::RMSNorm layer_norm;
    // x + DenseReluDense(layer_norm(x))
    Tensor forward(const Tensor& x) const;
  };

  T5LayerSelfAttention layer_0;
  T5LayerFF layer_1;
};

int64_t t5_relative_position_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance) {
  // T5Attention._relative_position_bucket(bidirectional=True), in torch's float32 order of operations:
  // max_exact + (log(float(n) / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
  // .to(long), where the Python double divisor and the integer factor become float32 scalars.
  num_buckets /= 2;
  int64_t bucket = relative_position > 0 ? num_buckets : 0;
  const int64_t n = relative_position < 0 ? -relative_position : relative_position;
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return bucket + n;
  const float log_ratio =
      static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float scaled = std::log(static_cast<float>(n) / static_cast<float>(max_exact)) / log_ratio *
                       static_cast<float>(num_buckets - max_exact);
  const int64_t large = std::min(max_exact + static_cast<int64_t>(scaled), num_buckets - 1);
  return bucket + large;
}

namespace {

// llama.cpp's names of T5 encoder tensors (gguf-py constants.py MODEL_TENSOR.ENC_*, tensor_mapping.py) and the
// HF names they come from; block tensors are "enc.blk.N.<gguf>" <-> "encoder.block.N.<hf>".
struct GgufName {
  const char* gguf;
  const char* hf;
};
constexpr GgufName kGgufNames[] = {
    {"token_embd.weight", "shared.weight"},
    {"enc.output_norm.weight", "encoder.final_layer_norm.weight"},
};
constexpr GgufName kGgufBlockNames[] = {
    {"attn_q.weight", "layer.0.SelfAttention.q.weight"},
    {"attn_k.weight", "layer.0.SelfAttention.k.weight"},
    {"attn_v.weight", "layer.0.SelfAttention.v.weight"},
    {"attn_o.weight", "layer.0.SelfAttention.o.weight"},
    {"attn_rel_b.weight", "layer.0.SelfAttention.relative_attention_bias.weight"},  // block 0 only
    {"attn_norm.weight", "layer.0.layer_norm.weight"},
    {"ffn_gate.weight", "layer.1.DenseReluDense.wi_0.weight"},
    {"ffn_up.weight", "layer.1.DenseReluDense.wi_1.weight"},
    {"ffn_down.weight", "layer.1.DenseReluDense.wo.weight"},
    {"ffn_norm.weight", "layer.1.layer_norm.weight"},
};

// `name` in the other naming: to_hf: llama.cpp -> HF, else HF -> llama.cpp. Unknown names come back unchanged.
std::string translate(const std::string& name, bool to_hf) {
  for (const GgufName& n : kGgufNames)
    if (name == (to_hf ? n.gguf : n.hf)) return to_hf ? n.hf : n.gguf;
  const std::string from_block = to_hf ? "enc.blk." : "encoder.block.",
                    to_block = to_hf ? "encoder.block." : "enc.blk.";
  if (!name.starts_with(from_block)) return name;
  const size_t dot = name.find('.', from_block.size());
  if (dot == std::string::npos) return name;
  const std::string index = name.substr(from_block.size(), dot - from_block.size()), tail = name.substr(dot + 1);
  for (const GgufName& n : kGgufBlockNames)
    if (tail == (to_hf ? n.gguf : n.hf)) return str_cat(to_block, index, ".", to_hf ? n.hf : n.gguf);
  return name;
}

// A GGUF KV value (as WeightStore::metadata() prints it), when present: a positive integer / a number.
void read_kv(const std::map<std::string, std::string>& kv, const std::string& key, int64_t& value,
             const std::string& source) {
  const auto it = kv.find(key);
  if (it == kv.end()) return;
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  FLUX_CHECK(ec == std::errc() && end == it->second.data() + it->second.size() && v > 0, source, ": KV '", key,
             "': expected a positive integer, got '", it->second, "'");
  value = v;
}
void read_kv(const std::map<std::string, std::string>& kv, const std::string& key, float& value,
             const std::string& source) {
  const auto it = kv.find(key);
  if (it == kv.end()) return;
  float v = 0;
  const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  FLUX_CHECK(ec == std::errc() && end == it->second.data() + it->second.size(), source, ": KV '", key,
             "': expected a number, got '", it->second, "'");
  value = v;
}

// llama.cpp's T5 hyper-parameters (convert_hf_to_gguf.py T5Model.set_gguf_parameters); false if the store has
// no T5 GGUF architecture. T5 v1.1's max distance (128) is not stored.
bool apply_gguf_kv(const WeightStore& store, T5Config& c, std::string& source) {
  const std::map<std::string, std::string>& kv = store.metadata();
  const auto arch = kv.find("general.architecture");
  if (arch == kv.end() || (arch->second != "t5encoder" && arch->second != "t5")) return false;
  source = "GGUF KV pairs of " + config::files_of(store);
  const std::string p = arch->second + ".";
  read_kv(kv, p + "vocab_size", c.vocab_size, source);
  read_kv(kv, p + "embedding_length", c.d_model, source);
  read_kv(kv, p + "feed_forward_length", c.d_ff, source);
  read_kv(kv, p + "block_count", c.num_layers, source);
  read_kv(kv, p + "attention.head_count", c.num_heads, source);
  read_kv(kv, p + "attention.key_length", c.d_kv, source);
  read_kv(kv, p + "attention.relative_buckets_count", c.relative_attention_num_buckets, source);
  read_kv(kv, p + "attention.layer_norm_epsilon", c.layer_norm_epsilon, source);
  read_kv(kv, p + "attention.layer_norm_rms_epsilon", c.layer_norm_epsilon, source);
  return true;
}

// The configuration the tensor shapes imply (HF or llama.cpp names); eps and max distance keep T5 v1.1's values.
void apply_shapes(const WeightStore& store, T5Config& c) {
  const auto name = [&](const std::string& hf) { return store.contains(hf) ? hf : translate(hf, false); };
  const std::string embed = store.contains("encoder.embed_tokens.weight") && !store.contains("shared.weight")
                                ? "encoder.embed_tokens.weight"
                                : name("shared.weight");
  if (store.contains(embed)) {
    const Tensor t = store.get(embed);  // [vocab, d_model]
    c.vocab_size = t.dim(0);
    c.d_model = t.dim(1);
  }
  const std::string a = "encoder.block.0.layer.0.SelfAttention.";
  if (const std::string n = name(a + "relative_attention_bias.weight"); store.contains(n)) {
    const Tensor t = store.get(n);  // [buckets, heads]
    c.relative_attention_num_buckets = t.dim(0);
    c.num_heads = t.dim(1);
  }
  if (const std::string n = name(a + "q.weight"); store.contains(n))
    c.d_kv = store.get(n).dim(0) / c.num_heads;  // [inner, d_model]
  if (const std::string n = name("encoder.block.0.layer.1.DenseReluDense.wi_0.weight"); store.contains(n))
    c.d_ff = store.get(n).dim(0);
  int64_t n_layers = 0;
  while (store.contains(name(str_cat("encoder.block.", n_layers, ".layer.0.layer_norm.weight")))) ++n_layers;
  if (n_layers > 0) c.num_layers = n_layers;
}

void apply_json(const nlohmann::json& j, T5Config& c, const std::string& source) {
  FLUX_CHECK(j.is_object(), source, ": expected a JSON object, got ", j.type_name());
  if (j.contains("feed_forward_proj")) {
    FLUX_CHECK(j["feed_forward_proj"] == "gated-gelu", source,
               ": field \"feed_forward_proj\": expected \"gated-gelu\" (T5 v1.1), got ", j["feed_forward_proj"].dump());
  }
  config::read_field(j, "vocab_size", c.vocab_size, source);
  config::read_field(j, "d_model", c.d_model, source);
  config::read_field(j, "d_kv", c.d_kv, source);
  config::read_field(j, "num_heads", c.num_heads, source);
  config::read_field(j, "d_ff", c.d_ff, source);
  config::read_field(j, "num_layers", c.num_layers, source);
  config::read_field(j, "relative_attention_num_buckets", c.relative_attention_num_buckets, source);
  config::read_field(j, "relative_attention_max_distance", c.relative_attention_max_distance, source);
  config::read_field(j, "layer_norm_epsilon", c.layer_norm_epsilon, source);
}

}  // namespace

T5Config T5Config::resolve(const WeightStore& store, const std::string& config_path) {
  T5Config c;
  if (const std::string file = config::find_config_file(config_path, "T5"); !file.empty()) {
    apply_json(config::read_json_file(file), c, file);
    log_info("T5 config from ", file, ": d_model ", c.d_model, ", ", c.num_layers, " layers, ", c.num_heads,
             " heads of ", c.d_kv);
    return c;
  }
  std::string source;
  if (const nlohmann::json j = config::metadata_config(store, source); !j.is_null()) {
    apply_json(j, c, source);
    log_info("T5 config from the safetensors metadata: d_model ", c.d_model, ", ", c.num_layers, " layers, ",
             c.num_heads, " heads of ", c.d_kv);
    return c;
  }
  apply_shapes(store, c);
  if (apply_gguf_kv(store, c, source)) {
    log_info("T5 config from the ", source, ": d_model ", c.d_model, ", ", c.num_layers, " layers, ", c.num_heads,
             " heads of ", c.d_kv);
    return c;
  }
  log_info("T5 config inferred from tensor shapes (heads from relative_attention_bias): d_model ", c.d_model, ", ",
           c.num_layers, " layers, ", c.num_heads, " heads of ", c.d_kv);
  return c;
}

std::string t5_gguf_name(const std::string& hf_name) {
  const std::string name = translate(hf_name, false);
  return name == hf_name ? std::string() : name;
}

void T5Encoder::use_hf_names(WeightStore& store) {
  if (store.contains("token_embd.weight") || store.contains("enc.blk.0.attn_q.weight"))
    store.rename([](const std::string& name) { return translate(name, true); });
}

T5Encoder::T5Encoder() = default;
T5Encoder::~T5Encoder() = default;
T5Encoder::T5Encoder(T5Encoder&&) noexcept = default;
T5Encoder& T5Encoder::operator=(T5Encoder&&) noexcept = default;

T5Encoder T5Encoder::load(WeightStore& store, const T5Config& config) {
  const int64_t d = config.d_model, inner = config.num_heads * config.d_kv, ff = config.d_ff;
  const float eps = config.layer_norm_epsilon;
  use_hf_names(store);
  T5Encoder m;
  m.config_ = config;
  // HF drops the tied encoder.embed_tokens.weight when saving; some single files carry it (identical) too.
  const bool has_shared = store.contains("shared.weight") || !store.contains("encoder.embed_tokens.weight");
  m.shared_ = store.require(has_shared ? "shared.weight" : "encoder.embed_tokens.weight", {config.vocab_size, d});
  if (has_shared && store.contains("encoder.embed_tokens.weight")) store.ignore("encoder.embed_tokens.weight");
  if (m.shared_.defined()) {
    const DType t = m.shared_.dtype();
    FLUX_CHECK((is_float(t) && t != DType::f64) || is_quantized(t), "tensor shared.weight: expected ",
               "f32/bf16/f16/f8_e4m3 or a GGUF block type, got ", m.shared_.describe());
  }
  m.relative_attention_bias_ = store.require_f32("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                                 {config.relative_attention_num_buckets, config.num_heads});
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string b = str_cat("encoder.block.", i, ".layer.");
    Block block;
    Block::T5Attention& attn = block.layer_0.SelfAttention;
    attn.q = ScaledLinear::bind(store, b + "0.SelfAttention.q.", d, inner);
    attn.k = ScaledLinear::bind(store, b + "0.SelfAttention.k.", d, inner);
    attn.v = ScaledLinear::bind(store, b + "0.SelfAttention.v.", d, inner);
    attn.o = ScaledLinear::bind(store, b + "0.SelfAttention.o.", inner, d);
    block.layer_0.layer_norm = nn::RMSNorm::bind(store, b + "0.layer_norm.weight", d, eps);
    Block::T5DenseGatedActDense& mlp = block.layer_1.DenseReluDense;
    mlp.wi_0 = ScaledLinear::bind(store, b + "1.DenseReluDense.wi_0.", d, ff);
    mlp.wi_1 = ScaledLinear::bind(store, b + "1.DenseReluDense.wi_1.", d, ff);
    mlp.wo = ScaledLinear::bind(store, b + "1.DenseReluDense.wo.", ff, d);
    block.layer_1.layer_norm = nn::RMSNorm::bind(store, b + "1.layer_norm.weight", d, eps);
    m.blocks_.push_back(std::move(block));
  }
  m.final_layer_norm_ = nn::RMSNorm::bind(store, "encoder.final_layer_norm.weight", d, eps);
  if (store.contains("scaled_fp8")) store.ignore("scaled_fp8");  // ComfyUI's marker of scaled fp8 files
  store.finish("T5 encoder (" + config::files_of(store) + ")");
  return m;
}

Tensor T5Encoder::Block::T5LayerSelfAttention::forward(const Tensor& x, const Tensor& position_bias,
                                                       int64_t n_heads) const {
  const Tensor normed = layer_norm.forward(x);  // [L, d_model]
  const int64_t len = x.dim(0);
  Tensor q = nn::split_heads(SelfAttention.q.forward(normed), n_heads);  // [L, inner] -> [H, L, d_kv]
  Tensor k = nn::split_heads(SelfAttention.k.forward(normed), n_heads);
  Tensor v = nn::split_heads(SelfAttention.v.forward(normed), n_heads);
  kernels::AttentionParams params;
  params.n_heads = n_heads;
  params.len_q = params.len_k = len;
  params.head_dim = q.dim(2);
  params.scale = 1.0f;  // T5 does not scale q.k
  params.bias = position_bias.data<float>();
  Tensor attn = Tensor::empty(DType::f32, {len, n_heads * params.head_dim});  // heads merged: [L, inner]
  kernels::attention(params, q.data<float>(), k.data<float>(), v.data<float>(), attn.mut<float>());
  return nn::add(x, SelfAttention.o.forward(attn));  // [L, inner] -> [L, d_model]
}

Tensor T5Encoder::Block::T5LayerFF::forward(const Tensor& x) const {
  const Tensor normed = layer_norm.forward(x);  // [L, d_model]
  // gelu_new(wi_0(x)) * wi_1(x): [L, d_model] -> [L, d_ff]
  Tensor gelu = nn::gelu_tanh(DenseReluDense.wi_0.forward(normed));
  const Tensor linear = DenseReluDense.wi_1.forward(normed);
  kernels::mul(gelu.data<float>(), linear.data<float>(), gelu.mut<float>(), gelu.numel());
  return nn::add(x, DenseReluDense.wo.forward(gelu));  // [L, d_ff] -> [L, d_model]
}

Tensor T5Encoder::compute_bias(int64_t len) const {
  // T5Attention.compute_bias: bias[h, i, j] = relative_attention_bias[bucket(j - i), h] -> [H, L, L]
  const int64_t n_heads = config_.num_heads, n_buckets = config_.relative_attention_num_buckets;
  std::vector<int64_t> bucket(static_cast<size_t>(2 * len - 1));  // by j - i + len - 1
  for (int64_t r = -(len - 1); r < len; ++r)
    bucket[static_cast<size_t>(r + len - 1)] =
        t5_relative_position_bucket(r, n_buckets, config_.relative_attention_max_distance);
  Tensor bias = Tensor::empty(DType::f32, {n_heads, len, len});
  const float* table = relative_attention_bias_.data<float>();  // [buckets, heads]
  float* out = bias.mut<float>();
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < len; ++i)
      for (int64_t j = 0; j < len; ++j)
        out[(h * len + i) * len + j] = table[bucket[static_cast<size_t>(j - i + len - 1)] * n_heads + h];
  return bias;
}

Tensor T5Encoder::forward(std::span<const int32_t> ids, std::stop_token stop) const {
  const int64_t len = static_cast<int64_t>(ids.size()), d = config_.d_model;
  FLUX_CHECK(len > 0, "T5 encoder: expected at least one token id");

  // shared(input_ids): rows widened from the storage dtype -> [L, d_model]
  Tensor h = Tensor::empty(DType::f32, {len, d});
  const auto* table = static_cast<const uint8_t*>(shared_.raw());
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(shared_.dtype());
  for (int64_t l = 0; l < len; ++l) {
    const int32_t id = ids[static_cast<size_t>(l)];
    FLUX_CHECK(id >= 0 && id < config_.vocab_size, "T5 encoder: token id ", id, " at position ", l,
               " outside the vocabulary [0, ", config_.vocab_size, ")");
    if (is_quantized(shared_.dtype())) {  // a row is whole blocks: dequantize just it
      const Tensor row = shared_.slice_rows(id, id + 1).to(DType::f32);
      std::copy_n(row.data<float>(), d, h.mut<float>() + l * d);
      continue;
    }
    convert_to_f32(shared_.dtype(), table + static_cast<size_t>(id) * row_bytes, h.mut<float>() + l * d,
                   static_cast<size_t>(d));
  }

  const Tensor position_bias = compute_bias(len);  // [H, L, L], from block 0, shared by every block
  for (const Block& block : blocks_) {
    if (stop.stop_requested()) throw Cancelled();
    h = block.layer_0.forward(h, position_bias, config_.num_heads);
    h = block.layer_1.forward(h);
  }
  return final_layer_norm_.forward(h);  // [L, d_model]
}

}  // namespace flux
