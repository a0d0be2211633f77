// CLIP-L text model (HF CLIPTextModel, keys "text_model.*"): token + position embeddings, pre-LN
// transformer layers with causal self-attention and quick-GELU MLP, final layer norm. FLUX uses the pooled
// output (the hidden state at the first EOS) as its vector y.
// Reference: transformers/models/clip/modeling_clip.py (CLIPTextTransformer).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "models/nn.h"
#include "tensor/tensor.h"

namespace flux {

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t max_position_embeddings = 77;
  float layer_norm_eps = 1e-5f;

  // config.json if `config_path` names one, else the store's __metadata__ if it carries a config, else
  // inferred from tensor shapes (heads: CLIP-L's 64-wide heads). Logs which rule was used.
  static ClipTextConfig resolve(const WeightStore& store, const std::string& config_path);
};

class ClipTextModel {
 public:
  struct Output {
    Tensor last_hidden_state;  // F32 [L, hidden]
    Tensor pooled;             // F32 [hidden]: last_hidden_state[pool_index]
  };

  // Binds every weight (finish() lists all missing/unused ones in one Error).
  static ClipTextModel load(WeightStore& store, const ClipTextConfig& config);
  const ClipTextConfig& config() const { return config_; }
  // ids: L <= max_position_embeddings token ids; pool_index: position of the first EOS.
  Output forward(std::span<const int32_t> ids, int pool_index) const;
  // The pooling position CLIPTextModel uses for FLUX's tokenizer ids: argmax(ids) = the first EOS (49407).
  static int first_eos(std::span<const int32_t> ids);

 private:
  struct Layer;
  ClipTextConfig config_;
  Tensor token_embedding_;     // F32 [vocab, hidden]
  Tensor position_embedding_;  // F32 [max_pos, hidden]
  std::vector<Layer> layers_;
  nn::LayerNorm final_layer_norm_;

 public:
  ClipTextModel();
  ~ClipTextModel();
  ClipTextModel(ClipTextModel&&) noexcept;
  ClipTextModel& operator=(ClipTextModel&&) noexcept;
};

}  // namespace flux
