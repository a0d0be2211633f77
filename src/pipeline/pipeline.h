// Pipeline: prompt -> image with a loaded FLUX.1 model set. One call of run() encodes the prompt (CLIP-L
// pooled vector + T5 hidden states), samples noise, runs the Euler flow-matching loop over the transformer
// and decodes the latent with the autoencoder. Progress and cancellation are per call (STYLE.md rule 8).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/image.h"
#include "kernels/matmul.h"
#include "pipeline/residency.h"
#include "tensor/tensor.h"

namespace flux {

// Where the weights are: a diffusers folder, or single files (any of which override the folder's).
struct ModelPaths {
  std::string model_dir;        // diffusers layout: model_index.json, transformer/, vae/, ...
  std::string diffusion_model;  // flux1-schnell.safetensors / flux1-dev.safetensors (BFL keys)
  std::string vae;              // ae.safetensors
  std::string clip_l;           // clip_l.safetensors
  std::string t5xxl;            // t5xxl_fp16.safetensors
  std::string tokenizers;       // a folder with tokenizer/ + tokenizer_2/ or clip-l/ + t5/
};

enum class Variant { schnell, dev };
const char* variant_name(Variant v);

// A LoRA adapter file and its strength (models/lora.h; pipeline/loras.h says how it is applied).
struct LoraSpec {
  std::string path;
  float strength = 1.0f;
};
// How adapters fixed at load are applied: automatic = merged into the weights when they are f32/bf16/f16 and
// prepacked, else at run time (quantized weights, low-memory mode); merged and runtime force one way.
enum class LoraMode { automatic, merged, runtime };
// "auto", "merge" or "runtime"; throws Error naming the value otherwise.
LoraMode parse_lora_mode(const std::string& s);

struct LoadOptions {
  int n_threads = 0;  // kernel pool size; 0 = cores
  // Reorder weights per call instead of once (see DESIGN.md), and drop every stage's weights when it is done
  // (ResidencyPlan::drop_transformer). Per-call weights are also chosen automatically when prepacking every
  // weight would take more than 70% of the memory budget.
  bool low_memory = false;
  // Bytes the pipeline may use (weights resident + the largest stage's working set; see residency.h); it
  // decides from it which components stay resident and refuses jobs that cannot fit. 0 = memory_available() at load
  // (MemAvailable, or the memory cgroup's free room when smaller) minus a margin (default_memory_budget);
  // no limit when neither is known.
  uint64_t memory_budget = 0;
  int prompt_cache_entries = 8;  // prompt embeddings kept (PromptCache); 0 = encode every time
  // VAE decode in tiles of at most this many pixels a side (overlapping, blended): 0 = never; -1 = automatic,
  // tiles of AutoEncoder::kAutoTile px when the untiled decode's activations would exceed
  // AutoEncoder::kAutoTileBytes (2 GiB: above about 840x840 with the FLUX VAE).
  int vae_tile = -1;
  // What every model's products multiply in (kernels::Precision): automatic = bf16 where the CPU's bf16 dot
  // product measures faster, else f32; f32 = the exact path of the golden tests; bf16 (needs AVX512_BF16: an
  // Error names it otherwise); int8 = int8 weights per output feature, activations per token.
  kernels::Precision precision = kernels::Precision::automatic;
  // The size of the first job, when known at load (generate): a job that cannot fit the budget is refused
  // (OverBudget) before any weight is bound, and the load binds in that job's plan's order. 0 = the default
  // size (1024x1024), and no refusal at load (a server refuses per request).
  int first_width = 0, first_height = 0;
  // LoRA adapters applied to every job (generate --lora), in order, and how (LoraMode).
  std::vector<LoraSpec> loras;
  LoraMode lora_mode = LoraMode::automatic;
  // Keys naming no module of the model: one warning instead of an error (also for per-request adapters).
  bool lora_lenient = false;
  int lora_cache_entries = 4;  // per-request adapters kept parsed (by path, size and mtime)
};

// Byte progress while loading: component ("t5", "transformer", ...), bytes done and total over all components.
using LoadProgress = std::function<void(const std::string& component, uint64_t bytes_done, uint64_t bytes_total)>;

struct GenerateRequest {
  std::string prompt;
  int width = 1024;       // pixels, multiple of 16
  int height = 1024;      // pixels, multiple of 16
  int steps = 0;          // 0 = the variant's default (schnell 4, dev 28)
  float guidance = 3.5f;  // dev only
  uint64_t seed = 0;
  // This job's LoRA adapters (the server's, resolved inside --lora-dir), applied at run time on top of any fixed at
  // load; the base weights are never touched, so the next job without them runs the plain model.
  std::vector<LoraSpec> loras;
  Tensor noise;          // optional F32 [1, 16, H/8, W/8]: replaces the seeded noise (exact reproducibility)
  bool preview = false;  // decode a small preview image at each step
  // Image-to-image: the init image (any size; fitted to width x height by io/image_resize.h's rule: scale to
  // cover, centre crop) and how much of the schedule runs: t_start = int(max(N - min(N * strength, N), 0)),
  // N - t_start steps (pipeline/img2img.h). strength 1 runs the whole schedule from pure noise (the text-to-image
  // result); 0.6 is diffusers' default. Ignored without init_image. Shared and immutable: requests are copied
  // (queues, n images per request), pictures are not.
  std::shared_ptr<const Image> init_image;
  double strength = 0.6;
};

// Image sides: multiples of 16 in [16, 16384]; throws Error naming the field and the nearest valid sizes.
void check_image_size(int width, int height);
// The variant's defaults: steps (schnell 4, dev 28) and T5 length (schnell 256, dev 512), as BFL cli.py.
int default_steps(Variant v);
int t5_length(Variant v);

enum class Stage { encode_text, denoise, decode, encode_image };  // encode_image: img2img's VAE encode
const char* stage_name(Stage s);

struct ProgressEvent {
  Stage stage = Stage::encode_text;
  int step = 0;                  // steps done (denoise), 0..total
  int total = 0;                 // steps in all (denoise): the steps that run (img2img: N - t_start)
  double elapsed_s = 0;          // since run() started
  std::optional<Image> preview;  // when requested, at denoise steps
};
using ProgressSink = std::function<void(const ProgressEvent&)>;

struct StageTimings {
  double encode_text_s = 0, denoise_s = 0, decode_s = 0, total_s = 0;
  // Parts of encode_text_s: each encoder's forward pass incl. re-binding it when dropped (0 on a cache hit).
  double clip_s = 0, t5_s = 0;
  double encode_image_s = 0;  // img2img: fitting and VAE-encoding the init image
};

struct GenerateResult {
  Image image;
  StageTimings timings;
  uint64_t seed = 0;
  int steps = 0;
  int steps_run = 0;  // denoising steps that ran: steps, or steps - t_start with an init image
  bool prompt_truncated = false;
  int prompt_tokens = 0;  // the prompt's T5 tokens (content + end token, before truncation)
};

// What is resident and why (for logs and /health). A snapshot: the pipeline's compute thread makes it.
struct MemoryStatus {
  uint64_t budget = 0;                // bytes
  std::string plan;                   // plan_name() of the last job's plan (after load: a default-size request's)
  std::string weights;                // "prepacked" or "per_call"
  uint64_t need = 0;                  // peak bytes of that plan
  std::string peak_stage;             // where that peak is
  std::vector<std::string> resident;  // components bound now: "clip", "t5", "transformer", "vae"
};

// Cancelled (base/error.h) is thrown by run() when the stop token is triggered (between steps or blocks).

class Pipeline {
 public:
  // Discovers and loads every component; throws Error naming whatever is missing or inconsistent.
  static std::unique_ptr<Pipeline> load(const ModelPaths& paths, const LoadOptions& options,
                                        const LoadProgress& progress = {});
  virtual ~Pipeline() = default;

  virtual Variant variant() const = 0;
  virtual std::string describe() const = 0;  // variant, dtypes, sizes (for /v1/models and logs)
  // Validates a request against the model (size multiple of 16, steps >= 1, ...); throws Error naming the field,
  // or OverBudget when the request cannot fit the memory budget even with every drop.
  virtual void validate(const GenerateRequest& request) const = 0;
  // The residency plan for a request: a pure function of the budget and the sizes (safe from any thread).
  virtual StagePlan memory_plan(const GenerateRequest&) const { return {}; }
  // The current state; call it only from the thread that runs run() (or before the first run).
  virtual MemoryStatus memory_status() const { return {}; }
  virtual GenerateResult run(const GenerateRequest& request, const ProgressSink& progress, std::stop_token stop) = 0;
};

}  // namespace flux
