// LoRA at run time: the adapters' low-rank side products added after each product of the FLUX transformer,
//   y = x Wᵀ + b + Σ strength * scale * (x · downᵀ) · upᵀ       (the same as merging, to f32 rounding)
// with the base weights untouched. A LoraSet is made per request (or per generate with quantized weights) and
// passed to Flux::forward; nothing of it is stored in the model, so a request without one runs the plain model.
// Cost per product: 2 M rank (K + N) flops against 2 M K N for the base product (rank 16 at FLUX sizes: ~1%).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/flux.h"
#include "models/lora.h"
#include "models/nn.h"

namespace flux {

class LoraSet {
 public:
  LoraSet() = default;
  // Binds a stack to a loaded transformer (its Linear slots): cheap, no weight is touched or copied; the adapters
  // are kept alive by the set. Throws Error naming the key of a delta that does not fit the model.
  static LoraSet bind(const Flux& flux, LoraStack stack) { return bind(flux.lora_slots(), std::move(stack)); }
  // The same against a list of slots (FluxWeights::slots(): blocks bound alone, bench_flux_block).
  static LoraSet bind(const std::vector<LoraSlot>& slots, LoraStack stack);

  bool empty() const { return n_deltas_ == 0; }
  size_t n_deltas() const { return n_deltas_; }
  const LoraStack& stack() const { return stack_; }
  // y: [m, linear.out_features()] += the side products of the deltas on `linear` (none: no-op). x: [m, in].
  void apply(const nn::Linear& linear, const float* x, int64_t m, float* y) const;

 private:
  struct Item {
    const LoraDelta* delta = nullptr;
    float scale = 1.0f;  // strength * delta scale
  };
  LoraStack stack_;
  std::vector<std::vector<Item>> by_slot_;  // by nn::Linear::lora_slot, in stack order
  size_t n_deltas_ = 0;
};

// The hook the FLUX modules call after each product: applies `loras` when set.
inline void apply_lora(const LoraSet* loras, const nn::Linear& linear, const float* x, int64_t m, float* y) {
  if (loras != nullptr) loras->apply(linear, x, m, y);
}

}  // namespace flux
