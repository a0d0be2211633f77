// CLIPTextModel forward, following transformers/models/clip/modeling_clip.py (CLIPTextTransformer,
// CLIPEncoderLayer, CLIPAttention, CLIPMLP). Activations are F32 [L, hidden] (one prompt, batch of 1).
#include "models/clip_text.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "models/config.h"

namespace flux {

// CLIPEncoderLayer: pre-LN self-attention and MLP blocks, each with a residual connection.
struct ClipTextModel::Layer {
  // CLIPAttention (causal, scale 1/sqrt(head_dim))
  struct Attention {
    nn::Linear q_proj, k_proj, v_proj, out_proj;  // [hidden, hidden] + bias
    Tensor forward(const Tensor& x, int64_t n_heads) const;
  };
  // CLIPMLP: fc2(quick_gelu(fc1(x)))
  struct Mlp {
    nn::Linear fc1;  // [intermediate, hidden]
    nn::Linear fc2;  // [hidden, intermediate]
    Tensor forward(const Tensor& x) const;
  };

  nn::LayerNorm layer_norm1;
  Attention self_attn;
  nn::LayerNorm layer_norm2;
  Mlp mlp;
};

namespace {

// Applies a CLIPTextConfig (or a CLIPConfig's "text_config") to `c`.
void apply_json(const nlohmann::json& root, ClipTextConfig& c, const std::string& source) {
  FLUX_CHECK(root.is_object(), source, ": expected a JSON object, got ", root.type_name());
  const nlohmann::json& j = root.contains("text_config") ? root["text_config"] : root;
  if (j.contains("hidden_act")) {
    FLUX_CHECK(j["hidden_act"] == "quick_gelu", source,
               ": field \"hidden_act\": expected \"quick_gelu\" (CLIP-L), got ", j["hidden_act"].dump());
  }
  config::read_field(j, "vocab_size", c.vocab_size, source);
  config::read_field(j, "hidden_size", c.hidden_size, source);
  config::read_field(j, "intermediate_size", c.intermediate_size, source);
  config::read_field(j, "num_hidden_layers", c.num_hidden_layers, source);
  config::read_field(j, "num_attention_heads", c.num_attention_heads, source);
  config::read_field(j, "max_position_embeddings", c.max_position_embeddings, source);
  config::read_field(j, "layer_norm_eps", c.layer_norm_eps, source);
}

}  // namespace

ClipTextConfig ClipTextConfig::resolve(const WeightStore& store, const std::string& config_path) {
  ClipTextConfig c;
  if (const std::string file = config::find_config_file(config_path, "CLIP text"); !file.empty()) {
    apply_json(config::read_json_file(file), c, file);
    log_info("CLIP text config from ", file, ": hidden ", c.hidden_size, ", ", c.num_hidden_layers, " layers, ",
             c.num_attention_heads, " heads");
    return c;
  }
  std::string source;
  if (const nlohmann::json j = config::metadata_config(store, source); !j.is_null()) {
    apply_json(j, c, source);
    log_info("CLIP text config from the safetensors metadata: hidden ", c.hidden_size, ", ", c.num_hidden_layers,
             " layers, ", c.num_attention_heads, " heads");
    return c;
  }
  // Tensor shapes; what they cannot tell (eps, head count) takes CLIP-L's values: heads of 64 channels.
  const std::string p = "text_model.";
  if (store.contains(p + "embeddings.token_embedding.weight")) {
    const Tensor t = store.get(p + "embeddings.token_embedding.weight");  // [vocab, hidden]
    c.vocab_size = t.dim(0);
    c.hidden_size = t.dim(1);
  }
  if (store.contains(p + "embeddings.position_embedding.weight"))
    c.max_position_embeddings = store.get(p + "embeddings.position_embedding.weight").dim(0);
  if (store.contains(p + "encoder.layers.0.mlp.fc1.weight"))
    c.intermediate_size = store.get(p + "encoder.layers.0.mlp.fc1.weight").dim(0);
  int64_t n_layers = 0;
  while (store.contains(str_cat(p, "encoder.layers.", n_layers, ".layer_norm1.weight"))) ++n_layers;
  if (n_layers > 0) c.num_hidden_layers = n_layers;
  FLUX_CHECK(c.hidden_size % 64 == 0, "CLIP text config (", config::files_of(store),
             "): no config.json or metadata, and", " hidden_size ", c.hidden_size,
             " is not a multiple of 64, so the head count cannot be inferred");
  c.num_attention_heads = c.hidden_size / 64;
  log_info("CLIP text config inferred from tensor shapes (heads = hidden / 64): hidden ", c.hidden_size, ", ",
           c.num_hidden_layers, " layers, ", c.num_attention_heads, " heads");
  return c;
}

ClipTextModel::ClipTextModel() = default;
ClipTextModel::~ClipTextModel() = default;
ClipTextModel::ClipTextModel(ClipTextModel&&) noexcept = default;
ClipTextModel& ClipTextModel::operator=(ClipTextModel&&) noexcept = default;

ClipTextModel ClipTextModel::load(WeightStore& store, const ClipTextConfig& config) {
  const int64_t d = config.hidden_size, ff = config.intermediate_size;
  FLUX_CHECK(config.num_attention_heads > 0 && d % config.num_attention_heads == 0, "CLIP text config: hidden_size ", d,
             " is not divisible by num_attention_heads ", config.num_attention_heads);
  ClipTextModel m;
  m.config_ = config;
  const std::string p = "text_model.";
  m.token_embedding_ = store.require_f32(p + "embeddings.token_embedding.weight", {config.vocab_size, d});
  m.position_embedding_ =
      store.require_f32(p + "embeddings.position_embedding.weight", {config.max_position_embeddings, d});
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string l = str_cat(p, "encoder.layers.", i, ".");
    Layer layer;
    layer.layer_norm1 = nn::LayerNorm::bind(store, l + "layer_norm1.", d, config.layer_norm_eps);
    layer.self_attn.q_proj = nn::Linear::bind(store, l + "self_attn.q_proj.", d, d);
    layer.self_attn.k_proj = nn::Linear::bind(store, l + "self_attn.k_proj.", d, d);
    layer.self_attn.v_proj = nn::Linear::bind(store, l + "self_attn.v_proj.", d, d);
    layer.self_attn.out_proj = nn::Linear::bind(store, l + "self_attn.out_proj.", d, d);
    layer.layer_norm2 = nn::LayerNorm::bind(store, l + "layer_norm2.", d, config.layer_norm_eps);
    layer.mlp.fc1 = nn::Linear::bind(store, l + "mlp.fc1.", d, ff);
    layer.mlp.fc2 = nn::Linear::bind(store, l + "mlp.fc2.", ff, d);
    m.layers_.push_back(std::move(layer));
  }
  m.final_layer_norm_ = nn::LayerNorm::bind(store, p + "final_layer_norm.", d, config.layer_norm_eps);
  // Buffers and heads FLUX does not use: the position ids are 0..L-1, the projection is CLIPModel's.
  for (const char* unused : {"text_model.embeddings.position_ids", "text_projection.weight", "logit_scale"})
    if (store.contains(unused)) store.ignore(unused);
  store.finish("CLIP text model (" + config::files_of(store) + ")");
  return m;
}

int ClipTextModel::first_eos(std::span<const int32_t> ids) {
  // transformers' legacy rule for eos_token_id == 2: input_ids.argmax(-1), i.e. the first 49407.
  return static_cast<int>(std::max_element(ids.begin(), ids.end()) - ids.begin());
}

Tensor ClipTextModel::Layer::Attention::forward(const Tensor& x, int64_t n_heads) const {
  const int64_t len = x.dim(0), head_dim = x.dim(1) / n_heads;
  Tensor q = nn::split_heads(q_proj.forward(x), n_heads);  // [L, hidden] -> [H, L, D]
  Tensor k = nn::split_heads(k_proj.forward(x), n_heads);
  Tensor v = nn::split_heads(v_proj.forward(x), n_heads);
  kernels::AttentionParams params;
  params.n_heads = n_heads;
  params.len_q = params.len_k = len;
  params.head_dim = head_dim;
  params.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  params.causal = true;
  Tensor attn = Tensor::empty(DType::f32, {len, n_heads * head_dim});  // heads merged: [L, H*D]
  kernels::attention(params, q.data<float>(), k.data<float>(), v.data<float>(), attn.mut<float>());
  return out_proj.forward(attn);
}

Tensor ClipTextModel::Layer::Mlp::forward(const Tensor& x) const {
  Tensor h = fc1.forward(x);  // [L, hidden] -> [L, intermediate]
  kernels::quick_gelu(h.data<float>(), h.mut<float>(), h.numel());
  return fc2.forward(h);  // [L, intermediate] -> [L, hidden]
}

ClipTextModel::Output ClipTextModel::forward(std::span<const int32_t> ids, int pool_index) const {
  const int64_t len = static_cast<int64_t>(ids.size()), d = config_.hidden_size;
  FLUX_CHECK(len > 0 && len <= config_.max_position_embeddings, "CLIP text model: expected 1..",
             config_.max_position_embeddings, " token ids, got ", len);
  FLUX_CHECK(pool_index >= 0 && pool_index < len, "CLIP text model: pool_index ", pool_index, " outside [0, ", len,
             ")");

  // CLIPTextEmbeddings: token_embedding(ids) + position_embedding(0..L-1) -> [L, hidden]
  Tensor h = Tensor::empty(DType::f32, {len, d});
  const float* tok = token_embedding_.data<float>();
  const float* pos = position_embedding_.data<float>();
  for (int64_t l = 0; l < len; ++l) {
    const int32_t id = ids[static_cast<size_t>(l)];
    FLUX_CHECK(id >= 0 && id < config_.vocab_size, "CLIP text model: token id ", id, " at position ", l,
               " outside the vocabulary [0, ", config_.vocab_size, ")");
    kernels::add(tok + id * d, pos + l * d, h.mut<float>() + l * d, d);
  }

  for (const Layer& layer : layers_) {
    h = nn::add(h, layer.self_attn.forward(layer.layer_norm1.forward(h), config_.num_attention_heads));
    h = nn::add(h, layer.mlp.forward(layer.layer_norm2.forward(h)));
  }

  Output out;
  out.last_hidden_state = final_layer_norm_.forward(h);  // [L, hidden]
  // pooler_output: last_hidden_state[pool_index] -> [hidden]
  out.pooled = out.last_hidden_state.slice_rows(pool_index, pool_index + 1).reshape({d}).clone();
  return out;
}

}  // namespace flux
