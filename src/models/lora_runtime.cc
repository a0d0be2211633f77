// LoRA side products at run time (models/lora_runtime.h).
#include "models/lora_runtime.h"

#include <string_view>
#include <unordered_map>

#include "kernels/low_rank.h"

namespace flux {

LoraSet LoraSet::bind(const std::vector<LoraSlot>& slots, LoraStack stack) {
  LoraSet set;
  set.by_slot_.resize(slots.size());
  std::unordered_map<std::string_view, size_t> slot_of;
  for (size_t i = 0; i < slots.size(); ++i) slot_of.emplace(slots[i].module, i);
  for (const LoraUse& use : stack) {
    FLUX_CHECK(use.adapter != nullptr, "LoraSet: an empty adapter in the stack");
    for (const LoraDelta& d : use.adapter->deltas()) {
      const auto it = slot_of.find(d.module);
      FLUX_CHECK(it != slot_of.end(), "lora ", use.adapter->path(), ": ", d.key, ": the model has no module ",
                 d.module);
      const size_t slot = it->second;
      const auto [out, in] = slots[slot].shape;
      FLUX_CHECK(d.down.dim(1) == in && d.row_begin + d.up.dim(0) <= out, "lora ", use.adapter->path(), ": ", d.key,
                 ": up ", d.up.shape().str(), " @ down ", d.down.shape().str(), " at row ", d.row_begin,
                 " does not fit ", d.module, ".weight [", out, ", ", in, "]");
      if (use.strength == 0.0f) continue;
      set.by_slot_[slot].push_back({&d, use.strength * d.scale});
      ++set.n_deltas_;
    }
  }
  set.stack_ = std::move(stack);
  return set;
}

void LoraSet::apply(const nn::Linear& linear, const float* x, int64_t m, float* y) const {
  const int slot = linear.lora_slot;
  if (slot < 0 || static_cast<size_t>(slot) >= by_slot_.size()) return;
  const int64_t in = linear.op.in_features(), out = linear.op.out_features();
  for (const Item& item : by_slot_[static_cast<size_t>(slot)]) {
    const LoraDelta& d = *item.delta;
    kernels::add_low_rank(x, m, in, d.down.data<float>(), d.rank(), d.up.data<float>(), d.up.dim(0), item.scale,
                          y + d.row_begin, out);
  }
}

}  // namespace flux
