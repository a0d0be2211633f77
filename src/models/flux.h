// The FLUX.1 transformer (BFL flux/model.py Flux): img_in, time_in, vector_in, guidance_in (dev), txt_in,
// EmbedND (3-axis RoPE), 19 DoubleStreamBlocks over the text and image streams, 38 SingleStreamBlocks over
// their concatenation, LastLayer. Weights bound by BFL names (flux1-*.safetensors); diffusers
// FluxTransformer2DModel folders are mapped to them in one table.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "models/lora.h"
#include "models/nn.h"
#include "tensor/tensor.h"

namespace flux {

struct FluxParams {
  int64_t in_channels = 64;
  int64_t out_channels = 64;
  int64_t vec_in_dim = 768;
  int64_t context_in_dim = 4096;
  int64_t hidden_size = 3072;
  float mlp_ratio = 4.0f;
  int64_t num_heads = 24;
  int64_t depth = 19;
  int64_t depth_single_blocks = 38;
  std::array<int64_t, 3> axes_dim = {16, 56, 56};
  float theta = 10000.0f;
  bool qkv_bias = true;
  bool guidance_embed = false;  // dev: true

  static FluxParams schnell();
  static FluxParams dev();
  // config.json (diffusers) / __metadata__ / shapes; guidance_embed from the presence of guidance_in weights.
  static FluxParams resolve(const WeightStore& store, const std::string& config_path);
};

// Tapping intermediate tensors by name (STYLE.md rule 11): called with e.g. "double_blocks.3.img" and the
// tensor, when set.
using TensorTap = std::function<void(const std::string& name, const Tensor& value)>;

class LoraSet;  // models/lora_runtime.h

class Flux {
 public:
  // The store holds BFL names, or diffusers names (detected and mapped). `mode`: matmul weights reordered once
  // (default) or per call (low memory; see kernels/matmul.h). `merged`: LoRA adapters merged into the weights they
  // touch as they are bound (models/lora.h; float weights only).
  static Flux load(WeightStore& store, const FluxParams& params,
                   kernels::WeightMode mode = kernels::default_weight_mode(), const LoraStack& merged = {});
  // ComfyUI checkpoints and some sd.cpp GGUF files nest the BFL names under "model.diffusion_model.": drops the
  // prefix. load() does it too; FluxParams::resolve() needs it done first.
  static void strip_checkpoint_prefix(WeightStore& store);
  const FluxParams& params() const { return params_; }

  // img: F32 [S, in_channels] packed latent; img_ids: F32 [S, 3]; txt: F32 [L, context_in_dim];
  // txt_ids: F32 [L, 3]; t in [0, 1]; y: F32 [vec_in_dim]; guidance used only when guidance_embed.
  // Returns F32 [S, out_channels]. Checks `stop` between blocks (throws Cancelled).
  // The blocks' scratch (and the hidden state) is sized for the sequence on the first call and kept for the
  // next calls of the same sequence length (the steps of a generation): a step allocates nothing per block.
  // Tapped tensors are views of that scratch, valid until the next forward.
  // `loras`: adapters applied at run time for this call only (models/lora_runtime.h), bound to this model.
  Tensor forward(const Tensor& img, const Tensor& img_ids, const Tensor& txt, const Tensor& txt_ids, float t,
                 const Tensor& y, float guidance, std::stop_token stop = {}, const TensorTap& tap = {},
                 const LoraSet* loras = nullptr) const;
  // The transformer's Linears by slot (nn::Linear::lora_slot), for LoraSet: module and weight shape.
  const std::vector<LoraSlot>& lora_slots() const;
  // Bytes of scratch kept between forward calls (0 before the first, or after release_scratch).
  size_t scratch_bytes() const;
  // Frees the kept scratch (e.g. once the denoising loop is done: about 1 GB at 1024x1024).
  void release_scratch() const;

 private:
  struct Impl;
  struct Scratch;
  FluxParams params_;
  std::shared_ptr<const Impl> impl_;
  std::shared_ptr<Scratch> scratch_;  // made by load()
};

}  // namespace flux
