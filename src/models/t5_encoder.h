// T5 v1.1 encoder (HF T5EncoderModel keys "encoder.*" + "shared.weight"): RMS norms, self-attention with a
// bidirectional relative position bias (32 buckets, max distance 128; the bias lives in block 0 and is
// shared by all blocks), gated-GELU(tanh) feed-forward, no attention mask (FLUX encodes the pads too).
// Reference: transformers/models/t5/modeling_t5.py (T5Stack, T5Attention._relative_position_bucket).
#pragma once

#include <cstdint>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "models/nn.h"
#include "tensor/tensor.h"

namespace flux {

struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 4096;
  int64_t d_kv = 64;
  int64_t num_heads = 64;
  int64_t d_ff = 10240;
  int64_t num_layers = 24;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  float layer_norm_epsilon = 1e-6f;

  // config.json, else __metadata__, else a GGUF file's KV pairs ("t5encoder.*" / "t5.*", vocab from the
  // embedding), else shapes (heads from relative_attention_bias). Tensors may carry HF or llama.cpp names.
  // Logs the rule used.
  static T5Config resolve(const WeightStore& store, const std::string& config_path);
};

// T5Attention._relative_position_bucket(bidirectional=True) for relative_position = key - query, computed in
// torch's float32 order of operations so the buckets match the reference exactly.
int64_t t5_relative_position_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance);

// llama.cpp's GGUF name of an HF T5 encoder tensor ("encoder.block.3.layer.1.DenseReluDense.wo.weight" ->
// "enc.blk.3.ffn_down.weight"), from the table use_hf_names() applies the other way; "" if it has none.
std::string t5_gguf_name(const std::string& hf_name);

class T5Encoder {
 public:
  // Renames llama.cpp's GGUF T5 tensors (token_embd, enc.blk.N.attn_q, ..., enc.output_norm) to the HF names
  // bound here; other names stay. load() calls it.
  static void use_hf_names(WeightStore& store);
  static T5Encoder load(WeightStore& store, const T5Config& config);
  const T5Config& config() const { return config_; }
  // ids: [L] -> last_hidden_state F32 [L, d_model] (after the final RMS norm). `stop` is checked between
  // blocks (T5-XXL takes seconds): throws Cancelled.
  Tensor forward(std::span<const int32_t> ids, std::stop_token stop = {}) const;

 private:
  struct Block;
  Tensor compute_bias(int64_t len) const;  // F32 [heads, L, L]

  T5Config config_;
  Tensor shared_;                   // [vocab, d_model] in storage dtype (rows widened / dequantized on lookup)
  Tensor relative_attention_bias_;  // F32 [buckets, heads]
  std::vector<Block> blocks_;
  nn::RMSNorm final_layer_norm_;

 public:
  T5Encoder();
  ~T5Encoder();
  T5Encoder(T5Encoder&&) noexcept;
  T5Encoder& operator=(T5Encoder&&) noexcept;
};

}  // namespace flux
