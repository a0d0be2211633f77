// LoRA adapters for the FLUX transformer. A file in any of the three formats found in the wild is read into
// low-rank deltas on BFL modules (a Linear's weight, or a row range of a fused one):
//   kohya / ComfyUI   lora_unet_<BFL path, . -> _> or diffusion_model.<BFL path>, .lora_down / .lora_up / .alpha
//   diffusers / PEFT  [transformer.]<FluxTransformer2DModel path>.lora_A / .lora_B (q/k/v split, linear1 split into
//                     to_q/to_k/to_v/proj_mlp, norm_out.linear's halves swapped: models/flux_names.cc's table)
//   XLabs             double_blocks.N.processor.{qkv,proj}_lora{1,2}, single_blocks.N.processor.{qkv,proj}_lora
//                     (.down / .up; qkv_lora = rows [0, 3H) of linear1)
// The rule (shared/golden/lora/README.md; ComfyUI LoRAAdapter.calculate_weight, kohya merge_to):
//   W' = W + strength * (alpha / rank) * up @ down       rank = down.shape[0]; no alpha -> scale 1
// summed over the adapters in the order given, in f32.
//
// Two ways to apply it (which one the pipeline picks: pipeline/loras.h):
//   merged   merge_lora() rewrites a weight at load (Flux::load(..., merged)): the steps cost nothing extra.
//   run time LoraSet (models/lora_runtime.h) adds y += s * (x · downᵀ) · upᵀ after each product, leaving the
//            base weights untouched (quantized weights; the server's per-request adapters).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace flux {

struct FluxParams;

enum class LoraFormat { kohya, comfyui, diffusers, xlabs };
const char* lora_format_name(LoraFormat f);  // "kohya", "comfyui", "diffusers", "xlabs"
// The format by tensor names (the most common LoRA key kind), or nullopt when no name is a LoRA key.
std::optional<LoraFormat> detect_lora_format(const std::vector<std::string>& names);

// One low-rank update of a BFL Linear: W[row_begin : row_begin + up.dim(0), :] += scale * strength * up @ down.
struct LoraDelta {
  std::string key;        // the file's key stem, e.g. "lora_unet_double_blocks_0_img_attn_qkv" (for messages)
  std::string module;     // BFL module, e.g. "double_blocks.0.img_attn.qkv" (its weight: module + ".weight")
  int64_t row_begin = 0;  // first row of the fused weight this delta updates
  Tensor down;            // F32 [rank, in]
  Tensor up;              // F32 [rows, rank]
  float scale = 1.0f;     // alpha / rank (1 when the file has no alpha)
  int64_t rank() const { return down.dim(0); }
};

struct LoraOptions {
  // Keys that name no module of the model become one warning listing them instead of an error.
  bool lenient = false;
};

class LoraAdapter {
 public:
  // Reads `path` (f32 / bf16 / f16 tensors) and maps every key onto the model described by `params`. Throws Error
  // naming the file and the key: a down/up rank mismatch, a shape that does not fit the model's weight, a key
  // naming no module (unless lenient), a half pair, or a file with no LoRA key at all ("not a LoRA").
  static LoraAdapter load(const std::string& path, const FluxParams& params, const LoraOptions& options = {});

  const std::string& path() const { return path_; }
  LoraFormat format() const { return format_; }
  const std::vector<LoraDelta>& deltas() const { return deltas_; }
  const std::vector<std::string>& ignored_keys() const { return ignored_; }  // lenient mode
  size_t bytes() const;                                                      // of the f32 deltas
  int64_t max_rank() const;

 private:
  std::string path_;
  LoraFormat format_ = LoraFormat::kohya;
  std::vector<LoraDelta> deltas_;
  std::vector<std::string> ignored_;
};

// A Linear of a bound transformer that adapters can update at run time: its BFL module and weight shape [out, in],
// by slot (nn::Linear::lora_slot).
struct LoraSlot {
  std::string module;
  std::array<int64_t, 2> shape{};
};

// An adapter at a strength, as the user lists them; a stack applies in order.
struct LoraUse {
  std::shared_ptr<const LoraAdapter> adapter;
  float strength = 1.0f;
};
using LoraStack = std::vector<LoraUse>;

// Whether any delta of the stack updates `module`.
bool lora_touches(const LoraStack& stack, const std::string& module);
// The BFL weight of `module` ([out, in], any float dtype) with the stack merged in, computed in f32 in the stack's
// order; returned in f32 for an f32 weight, else rounded back to the weight's dtype (as ComfyUI stores it).
Tensor merge_lora(const Tensor& weight, const std::string& module, const LoraStack& stack);

}  // namespace flux
