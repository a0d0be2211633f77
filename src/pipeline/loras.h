// The pipeline's LoRA adapters: which way they are applied, and the parsed adapters kept between jobs.
//
// When which mode (models/lora.h has both):
//   - Adapters fixed at load (generate --lora) are MERGED into the transformer's weights as they are bound (the
//     steps then cost nothing extra) when every transformer weight is f32/bf16/f16 and weights are prepacked. They
//     run at RUN TIME instead when the weights are quantized (GGUF blocks, fp8: a merge would have to re-quantize)
//     or in low-memory mode (per-call weights stay mapped from the file; merged ones would be private copies).
//     --lora-mode merge / runtime forces one way.
//   - Per-request adapters (the server's `loras`) always run at run time: the base weights are never touched, so
//     switching adapters between requests costs building a LoraSet (pointers) plus, the first time, parsing the
//     file; parsed adapters are cached by path (bounded, checked against the file's size and mtime).
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "models/flux.h"
#include "models/lora.h"
#include "models/lora_runtime.h"
#include "pipeline/pipeline.h"

namespace flux {

// Whether a merge can keep the weights' storage form: every 2-D transformer weight is f32, bf16 or f16.
bool lora_merge_possible(const WeightStore& flux_store);

// Parsed adapters by path, least recently used dropped beyond `capacity`. Thread-safe.
class LoraCache {
 public:
  explicit LoraCache(size_t capacity) : capacity_(capacity) {}
  // The adapter of `path` for a model of `params`, parsed now or taken from the cache (same size and mtime).
  std::shared_ptr<const LoraAdapter> get(const std::string& path, const FluxParams& params, const LoraOptions& options);
  size_t size() const;

 private:
  struct Entry {
    std::string path;
    uintmax_t file_size = 0;
    int64_t mtime = 0;
    bool lenient = false;
    std::shared_ptr<const LoraAdapter> adapter;
  };
  mutable std::mutex mutex_;
  size_t capacity_;
  std::list<Entry> entries_;  // most recent first
};

class PipelineLoras {
 public:
  PipelineLoras() : cache_(4) {}
  // Reads the adapters of options.loras and picks their mode (logged). Throws Error naming the file and key.
  PipelineLoras(const LoadOptions& options, const FluxParams& params, const WeightStore& flux_store, bool low_memory);

  // What Flux::load merges (empty when the fixed adapters run at run time).
  const LoraStack& merged() const { return merged_; }
  // The adapters a job runs at run time (fixed run-time ones, then the request's), bound to `flux`; nullopt when
  // there are none.
  std::optional<LoraSet> set_for(const Flux& flux, const std::vector<LoraSpec>& request);

 private:
  FluxParams params_;
  LoraOptions options_;
  LoraStack merged_, runtime_;
  LoraCache cache_;
};

}  // namespace flux
