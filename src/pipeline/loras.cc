// The pipeline's LoRA adapters (pipeline/loras.h).
#include "pipeline/loras.h"

#include <cmath>
#include <filesystem>

#include "base/log.h"

namespace flux {

LoraMode parse_lora_mode(const std::string& s) {
  if (s == "auto") return LoraMode::automatic;
  if (s == "merge") return LoraMode::merged;
  if (s == "runtime") return LoraMode::runtime;
  fail("--lora-mode: expected auto, merge or runtime, got \"", s, "\"");
}

bool lora_merge_possible(const WeightStore& flux_store) {
  for (const std::string& name : flux_store.names()) {
    const DType d = flux_store.get(name).dtype();
    if (flux_store.get(name).ndim() == 2 && d != DType::f32 && d != DType::bf16 && d != DType::f16) return false;
  }
  return true;
}

std::shared_ptr<const LoraAdapter> LoraCache::get(const std::string& path, const FluxParams& params,
                                                  const LoraOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  FLUX_CHECK(!ec, "lora ", path, ": cannot read: ", ec.message());
  const int64_t mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  {
    std::lock_guard lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->path != path || it->file_size != size || it->mtime != mtime || it->lenient != options.lenient) continue;
      entries_.splice(entries_.begin(), entries_, it);
      return it->adapter;
    }
  }
  auto adapter = std::make_shared<const LoraAdapter>(LoraAdapter::load(path, params, options));
  log_info("lora: read ", path, " (", lora_format_name(adapter->format()), ", ", adapter->deltas().size(),
           " deltas, rank ", adapter->max_rank(), ", ", adapter->bytes() >> 10, " KiB)");
  std::lock_guard lock(mutex_);
  std::erase_if(entries_, [&](const Entry& e) { return e.path == path; });
  entries_.push_front({path, size, mtime, options.lenient, adapter});
  while (entries_.size() > capacity_) entries_.pop_back();
  return adapter;
}

size_t LoraCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

PipelineLoras::PipelineLoras(const LoadOptions& options, const FluxParams& params, const WeightStore& flux_store,
                             bool low_memory)
    : params_(params), cache_(static_cast<size_t>(std::max(0, options.lora_cache_entries))) {
  options_.lenient = options.lora_lenient;
  if (options.loras.empty()) return;
  LoraStack stack;
  for (const LoraSpec& spec : options.loras) {
    FLUX_CHECK(std::isfinite(spec.strength), "--lora ", spec.path, ": strength must be finite, got ", spec.strength);
    stack.push_back(
        {std::make_shared<const LoraAdapter>(LoraAdapter::load(spec.path, params, options_)), spec.strength});
  }
  const bool can_merge = lora_merge_possible(flux_store);
  FLUX_CHECK(can_merge || options.lora_mode != LoraMode::merged,
             "--lora-mode merge: the transformer's weights are quantized; a merge needs f32, bf16 or f16 weights "
             "(use --lora-mode runtime or auto)");
  const bool merge =
      options.lora_mode == LoraMode::merged || (options.lora_mode == LoraMode::automatic && can_merge && !low_memory);
  (merge ? merged_ : runtime_) = std::move(stack);
  log_info("lora: ", options.loras.size(), " adapter(s) ",
           merge ? "merged into the transformer's weights at load" : "applied at run time as low-rank side products",
           options.lora_mode != LoraMode::automatic ? " (--lora-mode)"
           : merge                                  ? " (16/32-bit float weights, prepacked)"
           : can_merge                              ? " (low-memory mode: weights stay mapped)"
                                                    : " (quantized weights)");
}

std::optional<LoraSet> PipelineLoras::set_for(const Flux& flux, const std::vector<LoraSpec>& request) {
  if (runtime_.empty() && request.empty()) return std::nullopt;
  LoraStack stack = runtime_;
  for (const LoraSpec& spec : request) stack.push_back({cache_.get(spec.path, params_, options_), spec.strength});
  return LoraSet::bind(flux, std::move(stack));
}

}  // namespace flux
