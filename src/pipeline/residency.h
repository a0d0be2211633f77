// Staged memory (DESIGN.md, "Memory"): which components stay resident between and during jobs, decided from a
// byte budget, the components' sizes and the working set of each stage for the request's size. Pure functions
// of numbers (no files, no models) so every branch is tested with made-up sizes.
//
// The plans, from least to most dropping (a component "dropped" has its Linear packed copies freed and its
// files unmapped; it is re-bound, from the page cache when it still holds the pages, when a later job needs it):
//   all_resident        every component stays resident;
//   drop_text_encoders  CLIP and T5 are dropped once the prompt is encoded, re-bound for the next encode;
//   drop_transformer    also the transformer is dropped before the VAE decode and re-bound after the next
//                       encode, so the text encoders and the transformer are never resident together.
// The VAE (small, and needed by previews during denoising) always stays.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace flux {

enum class ResidencyPlan { all_resident, drop_text_encoders, drop_transformer };
const char* plan_name(ResidencyPlan p);  // "all_resident", "drop_text_encoders", "drop_transformer"

// The stages of one job, in order (pipeline.h's Stage, by index).
enum class MemoryStage { encode_text = 0, denoise = 1, decode = 2 };
const char* memory_stage_name(MemoryStage s);

// Bytes a component holds while resident: its stored weights (mapped file pages, counted whole: a stage
// touches them all) plus its private copies: packed Linears (estimated from the element counts; 0 in per_call
// mode), or what its binding measurably allocated when that is larger (e.g. diffusers' q/k/v fused into one
// weight: a copy even in per_call mode).
struct ComponentBytes {
  uint64_t stored = 0;
  uint64_t packed = 0;  // private copies
  uint64_t resident() const { return stored + packed; }
};

struct ModelBytes {
  ComponentBytes clip, t5, transformer, vae;
};

// Activations (and scratch) each stage needs on top of the resident weights, for one request. Includes the
// process's fixed overhead (see working_set()).
struct StageWorkingSet {
  uint64_t encode_text = 0, denoise = 0, decode = 0;
};

// The shape numbers the working-set formulas use (from the loaded configs).
struct ModelShapes {
  // CLIP-L: hidden, MLP width, heads; 77 tokens.
  int64_t clip_hidden = 768, clip_intermediate = 3072, clip_heads = 12;
  // T5: d_model, heads * d_kv, d_ff, heads.
  int64_t t5_d_model = 4096, t5_inner = 4096, t5_d_ff = 10240, t5_heads = 64;
  // Transformer: hidden D, MLP width (mlp_ratio * D), latent channels after packing, vec_in_dim.
  int64_t hidden = 3072, mlp_hidden = 12288, in_channels = 64, vec_in_dim = 768;
  // VAE: base channels and multipliers (the decoder's widest full-resolution level uses ch * ch_mult[1]).
  int64_t vae_ch = 128;
  std::vector<int64_t> vae_ch_mult = {1, 2, 4, 4};
  bool vae_winograd = false;  // the decoder's 3x3 convolutions run as Winograd (kernels/conv_layer.h): its scratch
  int prompt_cache_entries = 8;
  int n_threads = 2;
};

// The working sets of a width x height request with t5_tokens T5 tokens (formulas in residency.cc).
StageWorkingSet working_set(const ModelShapes& m, int width, int height, int t5_tokens);

struct StagePlan {
  bool fits = false;
  ResidencyPlan plan = ResidencyPlan::drop_transformer;  // when !fits: the most dropping plan (the one checked last)
  std::array<uint64_t, 3> need{};                        // peak bytes of each stage under `plan`
  std::array<uint64_t, 3> peaks{};                       // the peak of every plan, by ResidencyPlan (for logs)
  uint64_t budget = 0;
  // The weights alone exceed the budget but private memory (packed copies + working set) fits under
  // drop_transformer: the job runs with the weights streamed from the page cache / disk (slower). fits is true.
  bool streams_weights = false;
  MemoryStage peak_stage() const;  // the stage with the largest need (the first one on ties)
  uint64_t peak() const { return need[static_cast<size_t>(peak_stage())]; }
};

// The least dropping plan whose every stage fits the budget (need <= budget); else drop_transformer, which
// fits with streams_weights when its private memory (packed + working set) fits, or {fits = false}. force_drops
// (--low-memory) considers drop_transformer only.
//   need(all_resident)       = clip + t5 + transformer + vae + ws[s]                        for every stage s
//   need(drop_text_encoders) = encode: clip + t5 + transformer + vae + ws; others: transformer + vae + ws
//   need(drop_transformer)   = encode: clip + t5 + vae + ws; denoise: transformer + vae + ws; decode: vae + ws
StagePlan plan_residency(const ModelBytes& bytes, const StageWorkingSet& ws, uint64_t budget, bool force_drops);

// Whether a component is resident during `stage` under `plan` (the state the pipeline moves to before the stage).
enum class Component { clip, t5, transformer, vae };
const char* component_name(Component c);  // "clip", "t5", "transformer", "vae"
bool resident_during(ResidencyPlan plan, MemoryStage stage, Component c);

// Which components keep a packed copy of their weights (made at bind, in the product's dtype; the file pages it
// copied leave the process) instead of reading their mapped files at each product (per call):
//   all             every component packed (fastest);
//   skip_encoders   the transformer and the VAE packed, CLIP and T5 per call (they run once per prompt, the
//                   transformer once per step);
//   none            every component per call (--low-memory, or the packed copies do not fit).
enum class Packing { all, skip_encoders, none };
const char* packing_name(Packing p);  // "prepacked", "prepacked; clip, t5 per_call", "per_call"
bool packed_under(Packing p, Component c);

// What a model holds under `packing`, from `sizes` (per component: stored = its files' bytes, packed = its
// packed copies' bytes): a packed component holds its copies only, a per-call one its files only.
ModelBytes bytes_under(const ModelBytes& sizes, Packing packing);

// The fastest packing whose copies take at most 85% of the budget and with which a request of working set `ws`
// fits without dropping the transformer between jobs (re-packing it each job costs more than reading it per
// call). When none does: none if that fits, else all if its copies take at most 85%, else none. Always none when
// low_memory.
Packing choose_packing(const ModelBytes& sizes, const StageWorkingSet& ws, uint64_t budget, bool low_memory);

// Whether the files of the packed components should leave the page cache once copied (base/mapped_file.h,
// set_evict_released_pages): when every file plus the copies of `packing` and the largest working set do not fit
// the budget together, the copied files' pages (dead once copied) would push out those of the files read per
// call. False under Packing::none (nothing is copied).
bool evict_copied_files(const ModelBytes& sizes, Packing packing, const StageWorkingSet& ws, uint64_t budget);

// Thrown when a job cannot fit the budget even with every drop: names the request size, the stage, the bytes
// it needs and the budget.
struct OverBudget : Error {
  explicit OverBudget(const std::string& message) : Error(message) {}
};
std::string over_budget_message(const StagePlan& p, int width, int height);

// "8G", "8GiB", "8GB", "500M", "500MiB", "64K", "1T", "123" (bytes): binary multiples (G = GiB). Fractions
// allowed ("1.5G"). Throws Error naming the flag and the value.
uint64_t parse_byte_size(const std::string& flag, const std::string& value);
// What the budget defaults to: what is available (MemAvailable, or a memory cgroup's free room) minus a safety
// margin for the rest of the system (page tables, other processes' growth, our own allocator's slack):
// 10%, at least 512 MiB, but at most a quarter of a small amount (a 300 MiB cgroup keeps 225 MiB). 0 when
// nothing is known.
uint64_t default_memory_budget(uint64_t mem_available);
std::string mib(uint64_t bytes);  // "1234 MiB"

}  // namespace flux
