// Pipeline::load (discovery, consistency checks, byte progress) and run (BFL cli.py main: prepare, get_schedule,
// denoise, unpack, ae.decode).
#include "pipeline/pipeline.h"

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "base/log.h"
#include "base/mapped_file.h"
#include "base/memory_limit.h"
#include "base/system.h"
#include "base/thread_pool.h"
#include "io/weight_store.h"
#include "kernels/conv_layer.h"
#include "kernels/matmul.h"
#include "models/autoencoder.h"
#include "models/clip_text.h"
#include "models/flux.h"
#include "models/nn.h"
#include "models/t5_encoder.h"
#include "pipeline/img2img.h"
#include "pipeline/load_reads.h"
#include "pipeline/loras.h"
#include "pipeline/model_discovery.h"
#include "pipeline/preview.h"
#include "pipeline/prompt_cache.h"
#include "pipeline/resident_models.h"
#include "pipeline/sampling.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace flux {

const char* variant_name(Variant v) { return v == Variant::dev ? "dev" : "schnell"; }

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::encode_text:
      return "encode_text";
    case Stage::denoise:
      return "denoise";
    case Stage::decode:
      return "decode";
    case Stage::encode_image:
      return "encode_image";
  }
  return "?";
}

int default_steps(Variant v) { return v == Variant::dev ? 28 : 4; }
int t5_length(Variant v) { return v == Variant::dev ? 512 : 256; }

void check_image_size(int width, int height) {
  auto check_side = [](const char* field, int v) {
    if (v >= 16 && v <= 16384 && v % 16 == 0) return;
    if (v < 16 || v > 16384) fail(field, ": expected a multiple of 16 in 16..16384, got ", v);
    fail(field, ": expected a multiple of 16, got ", v, " (nearest valid: ", v / 16 * 16, " or ", (v + 15) / 16 * 16,
         ")");
  };
  check_side("width", width);
  check_side("height", height);
}

namespace {

using Clock = std::chrono::steady_clock;
using kernels::WeightMode;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string first_dtype(const WeightStore& store, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (store.contains(n)) return dtype_name(store.get(n).dtype());
  return "?";
}

// The memory policy of a loaded pipeline: fixed at load.
struct MemoryPolicy {
  uint64_t budget = 0;
  bool force_drops = false;  // --low-memory
  std::string weights;  // the weight modes, for /health: "prepacked", "per_call" or the mix (residency.h, packing_name)
  ModelBytes bytes;
  ModelShapes shapes;
  int vae_tile = -1;  // LoadOptions::vae_tile
};

class FluxPipeline final : public Pipeline {
 public:
  FluxPipeline(ClipTokenizer clip_tok, T5Tokenizer t5_tok, ResidentModels models, std::string dtype,
               size_t cache_entries, MemoryPolicy memory)
      : prompt_cache_(cache_entries),
        clip_tok_(std::move(clip_tok)),
        t5_tok_(std::move(t5_tok)),
        models_(std::move(models)),
        dtype_(std::move(dtype)),
        memory_(std::move(memory)) {}

  Variant variant() const override { return models_.flux_params().guidance_embed ? Variant::dev : Variant::schnell; }
  int default_steps() const { return flux::default_steps(variant()); }
  int t5_length() const { return flux::t5_length(variant()); }

  std::string describe() const override {
    const FluxParams& p = models_.flux_params();
    return str_cat("FLUX.1-", variant_name(variant()), " (", dtype_, "; transformer hidden ", p.hidden_size, ", ",
                   p.depth, "+", p.depth_single_blocks, " blocks, ", p.num_heads, " heads; T5 d_model ",
                   models_.t5_config().d_model, " x ", models_.t5_config().num_layers, " layers; CLIP hidden ",
                   models_.clip_config().hidden_size, "; VAE ch ", models_.ae_params().ch, "; default ",
                   default_steps(), " steps, T5 length ", t5_length(), ")");
  }

  void validate(const GenerateRequest& r) const override {
    check_image_size(r.width, r.height);
    FLUX_CHECK(r.steps >= 0 && r.steps <= 1000, "steps: expected 1..1000 (0 = default ", default_steps(), "), got ",
               r.steps);
    FLUX_CHECK(std::isfinite(r.guidance) && r.guidance >= 0 && r.guidance <= 100,
               "guidance: expected a finite value in [0, 100], got ", r.guidance);
    if (r.noise.defined()) {
      const Shape want{1, 16, r.height / 8, r.width / 8};
      FLUX_CHECK(r.noise.dtype() == DType::f32 || is_float(r.noise.dtype()), "noise: expected a float tensor, got ",
                 r.noise.describe());
      FLUX_CHECK(r.noise.numel() == want.numel() &&
                     (r.noise.shape() == want || r.noise.shape() == Shape{16, r.height / 8, r.width / 8}),
                 "noise: expected ", want.str(), " for ", r.width, "x", r.height, ", got ", r.noise.shape().str());
    }
    if (r.init_image) {
      const Image& init = *r.init_image;
      FLUX_CHECK(init.width > 0 && init.height > 0 &&
                     init.pixels.size() == static_cast<size_t>(init.width) * static_cast<size_t>(init.height) * 3,
                 "init image: expected RGB pixels for ", init.width, "x", init.height, ", got ", init.pixels.size(),
                 " bytes");
      img2img_t_start(r.steps > 0 ? r.steps : default_steps(), r.strength);  // throws naming strength and steps
    }
    for (const LoraSpec& l : r.loras)
      FLUX_CHECK(std::isfinite(l.strength) && std::abs(l.strength) <= 100,
                 "loras: strength: expected a finite value in [-100, 100], got ", l.strength);
    const StagePlan plan = memory_plan(r);
    if (!plan.fits) throw OverBudget(over_budget_message(plan, r.width, r.height));
  }

  StagePlan memory_plan(const GenerateRequest& r) const override {
    const StageWorkingSet ws = working_set(memory_.shapes, r.width, r.height, t5_length());
    return plan_residency(memory_.bytes, ws, memory_.budget, memory_.force_drops);
  }

  MemoryStatus memory_status() const override {
    MemoryStatus m;
    m.budget = memory_.budget;
    m.plan = plan_name(plan_.plan);
    m.weights = memory_.weights;
    m.need = plan_.peak();
    m.peak_stage = memory_stage_name(plan_.peak_stage());
    m.resident = models_.resident_names();
    return m;
  }

  // The read-ahead of the files read per call, still running after the load (set once by load()).
  void keep_read_ahead(std::jthread t) { read_ahead_ = std::move(t); }

  // LoRA adapters fixed at load and the cache of per-request ones (set once by load()).
  void set_loras(std::unique_ptr<PipelineLoras> loras) { loras_ = std::move(loras); }

  // The plan of the last job (at load: of `r`, a default-size request). Logs it when it changes; dropping
  // what the plan drops before the first stage.
  void adopt_plan(const GenerateRequest& r, const char* why) {
    const StagePlan plan = memory_plan(r);
    const bool changed = !plan_logged_ || plan.plan != plan_.plan;
    plan_ = plan;
    plan_logged_ = true;
    static const char* const drops[] = {"drops nothing", "drops clip + t5 after encoding",
                                        "drops clip + t5 after encoding and the transformer before decoding"};
    if (changed)
      log_info("memory: plan ", plan_name(plan.plan), " for ", why, " ", r.width, "x", r.height, ": ",
               drops[static_cast<int>(plan.plan)], "; peak ", mib(plan.peak()), " at ",
               memory_stage_name(plan.peak_stage()), " (encode_text ", mib(plan.need[0]), ", denoise ",
               mib(plan.need[1]), ", decode ", mib(plan.need[2]), "), budget ",
               memory_.budget == UINT64_MAX ? std::string("unlimited") : mib(memory_.budget), " (peaks: all_resident ",
               mib(plan.peaks[0]), ", drop_text_encoders ", mib(plan.peaks[1]), ", drop_transformer ",
               mib(plan.peaks[2]), ")",
               !plan.fits             ? ": DOES NOT FIT, such jobs are refused"
               : plan.streams_weights ? ": the weights exceed the budget and are streamed from the page cache or "
                                        "the disk as each stage uses them (slower)"
                                      : "");
    if (plan.plan == ResidencyPlan::drop_transformer) models_.release(Component::transformer);
  }

  GenerateResult run(const GenerateRequest& r, const ProgressSink& progress, std::stop_token stop) override {
    validate(r);
    adopt_plan(r, "a job of");
    const bool drop_text = plan_.plan != ResidencyPlan::all_resident;
    const bool drop_transformer = plan_.plan == ResidencyPlan::drop_transformer;
    const auto t0 = Clock::now();
    GenerateResult result;
    result.seed = r.seed;
    result.steps = r.steps > 0 ? r.steps : default_steps();
    auto emit = [&](Stage stage, int step, int total, std::optional<Image> preview = std::nullopt) {
      if (!progress) return;
      ProgressEvent e;
      e.stage = stage;
      e.step = step;
      e.total = total;
      e.elapsed_s = seconds_since(t0);
      e.preview = std::move(preview);
      progress(e);
    };

    // Text: CLIP-L pooled vector (y) and T5 hidden states (txt).
    emit(Stage::encode_text, 0, 0);
    const ClipTokens clip_ids = clip_tok_.encode(r.prompt, 77);
    const T5Tokens t5_ids = t5_tok_.encode(r.prompt, t5_length());
    result.prompt_truncated = clip_ids.truncated() || t5_ids.truncated();
    result.prompt_tokens = t5_ids.untruncated_len;
    const PromptCache::Entry text = prompt_cache_.get_or_compute(PromptKey::of_ids(clip_ids.ids, t5_ids.ids), [&] {
      PromptEmbedding e;
      auto t = Clock::now();
      models_.ensure(Component::clip);
      e.pooled = models_.clip().forward(clip_ids.ids, clip_ids.pool_index).pooled;  // [vec_in_dim]
      result.timings.clip_s = seconds_since(t);
      if (stop.stop_requested()) throw Cancelled();
      t = Clock::now();
      models_.ensure(Component::t5);
      e.txt = models_.t5().forward(t5_ids.ids);  // [L, context_in_dim]
      result.timings.t5_s = seconds_since(t);
      return e;
    });
    if (drop_text) {
      models_.release(Component::clip);
      models_.release(Component::t5);
    }
    if (stop.stop_requested()) throw Cancelled();
    const Tensor& y = text->pooled;
    const Tensor& txt = text->txt;
    result.timings.encode_text_s = seconds_since(t0);

    // img2img: the init image's latent x0 [S, 64] (the VAE always stays resident; its encode needs less
    // activation memory than the decode the plan budgets for, and under drop_transformer the transformer is
    // not bound yet).
    Tensor x0;
    if (r.init_image) {
      const auto te = Clock::now();
      emit(Stage::encode_image, 0, 0);
      models_.ensure(Component::vae);
      x0 = encode_init_image(models_.vae(), *r.init_image, r.width, r.height, vae_tiling(r, "encoding"));
      result.timings.encode_image_s = seconds_since(te);
      if (stop.stop_requested()) throw Cancelled();
    }

    // Noise and packing; the schedule, trimmed by strength for img2img, and the noise mixed with x0 at its start.
    const auto t1 = Clock::now();
    const int64_t h = r.height / 8, w = r.width / 8;
    Tensor noise =
        r.noise.defined() ? r.noise.to(DType::f32).reshape(Shape{16, h, w}) : get_noise(r.height, r.width, r.seed);
    Tensor img = pack_latent(noise);  // [S, 64]
    const Tensor img_ids = make_img_ids(h, w);
    const Tensor txt_ids = make_txt_ids(txt.dim(0));
    std::vector<float> timesteps = get_schedule(result.steps, img.dim(0), variant() == Variant::dev);
    if (r.init_image) {
      timesteps = trim_schedule(timesteps, img2img_t_start(result.steps, r.strength));
      img = mix_noise(img, x0, timesteps[0]);
    }
    const int total = static_cast<int>(timesteps.size()) - 1;
    result.steps_run = total;
    models_.ensure(Component::transformer);
    models_.ensure(Component::vae);
    emit(Stage::denoise, 0, total);
    if (r.preview) ensure_preview();
    const Flux& flux = models_.transformer();
    const std::optional<LoraSet> loras = loras_->set_for(flux, r.loras);  // run-time adapters (pipeline/loras.h)
    VelocityFn model = [&](const Tensor& x, float t) {
      return flux.forward(x, img_ids, txt, txt_ids, t, y, r.guidance, stop, {}, loras ? &*loras : nullptr);
    };
    StepFn on_step = [&](int k, const Tensor& x, const Tensor& v, float t, float) {
      std::optional<Image> preview;
      if (r.preview) {
        Tensor x0 = Tensor::empty(DType::f32, x.shape());  // x - t * v
        const float* xs = x.data<float>();
        const float* vs = v.data<float>();
        float* o = x0.mut<float>();
        for (int64_t i = 0; i < x.numel(); ++i) o[i] = xs[i] - t * vs[i];
        preview = preview_->render(unpack_latent(x0, h, w));
      }
      emit(Stage::denoise, k + 1, total, std::move(preview));
    };
    // The transformer keeps its scratch from step to step; the residency plan counts on having that memory
    // back for the decode (and between jobs), also when the job stops early.
    Tensor latent;
    try {
      latent = denoise(model, img, timesteps, on_step, stop);
    } catch (...) {
      flux.release_scratch();
      throw;
    }
    flux.release_scratch();
    result.timings.denoise_s = seconds_since(t1);

    // Decode.
    const auto t2 = Clock::now();
    if (drop_transformer) models_.release(Component::transformer);
    emit(Stage::decode, total, total);
    const Tensor image = models_.vae().decode(unpack_latent(latent, h, w), vae_tiling(r));  // [3, H, W]
    result.image = image_from_tensor(image);
    result.timings.decode_s = seconds_since(t2);
    result.timings.total_s = seconds_since(t0);
    return result;
  }

 private:
  // --vae-tile, or tiles when the untiled decode's activations would exceed AutoEncoder::kAutoTileBytes.
  VaeTiling vae_tiling(const GenerateRequest& r, const char* what = "decoding") const {
    const AutoEncoderParams& p = models_.ae_params();
    VaeTiling t = AutoEncoder::auto_tiling(p, r.width, r.height);
    if (memory_.vae_tile >= 0) t.tile = memory_.vae_tile;
    if (t.tile > 0 && t.tile < std::max(r.width, r.height)) {
      log_info("vae: ", what, " ", r.width, "x", r.height, " in tiles of at most ", t.tile, " px, overlap ",
               std::min(t.overlap, t.tile / 2), " px (",
               memory_.vae_tile >= 0 ? std::string("--vae-tile")
                                     : str_cat("automatic: untiled, its activations would take ",
                                               mib(AutoEncoder::decode_activation_bytes(p, r.width, r.height)), " > ",
                                               mib(AutoEncoder::kAutoTileBytes)),
               ")");
    }
    return t;
  }

  void ensure_preview() {
    std::call_once(preview_once_, [&] {
      const auto t0 = Clock::now();
      preview_ = LatentPreview::fit([&](const Tensor& z) { return models_.vae().decode(z); });
      log_debug("latent preview map fitted in ", seconds_since(t0), " s");
    });
  }

  PromptCache prompt_cache_;
  ClipTokenizer clip_tok_;
  T5Tokenizer t5_tok_;
  ResidentModels models_;
  std::string dtype_;
  MemoryPolicy memory_;
  StagePlan plan_;  // the last job's (or the load-time reference request's)
  bool plan_logged_ = false;
  std::once_flag preview_once_;
  std::optional<LatentPreview> preview_;
  std::unique_ptr<PipelineLoras> loras_ = std::make_unique<PipelineLoras>();
  std::jthread read_ahead_;  // declared last: stopped and joined first
};

std::string config_or_file(const ComponentFiles& c) { return c.config.empty() ? c.weights : c.config; }

// Bytes every float weight of a component would take prepacked: its element count times the size of the dtype
// its products run in: the precision's for the transformer, and for the other components the one they use under
// int8 too (models/nn.h: only the transformer's blocks multiply in int8).
uint64_t packed_weight_bytes(const WeightStore& store, Component c) {
  const DType compute = c == Component::transformer ? kernels::linear_compute_dtype()
                                                    : kernels::linear_compute_dtype(nn::precision_without_int8());
  const uint64_t narrow = compute == DType::f32 ? 4 : compute == DType::i8 ? 1 : 2;
  uint64_t bytes = 0;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name);
    // Quantized weights are dequantized into the compute dtype when packed, like 16/8-bit floats.
    if (!is_float(t.dtype()) && !is_quantized(t.dtype())) continue;
    const uint64_t n = static_cast<uint64_t>(t.numel());
    // The decoder's Winograd layers hold their transformed weight (16 bytes an element), made at load.
    if (c == Component::vae && t.ndim() == 4 && name.rfind("decoder.", 0) == 0 &&
        kernels::conv_winograd_applies(t.dim(0), t.dim(1), t.dim(2), 1, vae_conv_compute(t.dtype()))) {
      bytes += 16 * n;
      continue;
    }
    bytes += n * (t.dtype() == DType::f32 || t.dtype() == DType::f64 ? 4 : narrow);
  }
  return bytes;
}

}  // namespace

std::unique_ptr<Pipeline> Pipeline::load(const ModelPaths& paths, const LoadOptions& options,
                                         const LoadProgress& progress) {
  const auto t0 = Clock::now();
  if (options.n_threads > 0) set_default_threads(options.n_threads);
  // Before any size estimate or binding: both follow the product dtype. Throws naming the CPU feature a
  // precision needs and this CPU lacks.
  kernels::set_default_precision(options.precision);
  log_info("products: precision ", kernels::precision_name(options.precision), ", 16/8-bit weights multiply in ",
           dtype_name(kernels::linear_compute_dtype()));
  const ModelFiles files = discover_model_files(paths);
  const TokenizerDirs tok_dirs = find_tokenizer_dirs(files.tokenizers);
  ClipTokenizer clip_tok = ClipTokenizer::load(tok_dirs.clip);
  T5Tokenizer t5_tok = T5Tokenizer::load(tok_dirs.t5);
  log_debug("tokenizers loaded in ", seconds_since(t0), " s");

  WeightStore t5_store = WeightStore::open(files.t5.weights);
  WeightStore clip_store = WeightStore::open(files.clip.weights);
  WeightStore flux_store = WeightStore::open(files.transformer.weights);
  WeightStore ae_store = WeightStore::open(files.vae.weights);
  T5Encoder::use_hf_names(t5_store);          // llama.cpp / city96 GGUF names
  Flux::strip_checkpoint_prefix(flux_store);  // ComfyUI / sd.cpp prefixed names
  const uint64_t total =
      files_bytes(t5_store) + files_bytes(clip_store) + files_bytes(flux_store) + files_bytes(ae_store);

  // Configurations first, so inconsistent components fail before any weight is read.
  const T5Config t5_cfg = T5Config::resolve(t5_store, files.t5.config);
  const ClipTextConfig clip_cfg = ClipTextConfig::resolve(clip_store, files.clip.config);
  const FluxParams flux_params = FluxParams::resolve(flux_store, files.transformer.config);
  const AutoEncoderParams ae_params = AutoEncoderParams::resolve(ae_store, files.vae.config);
  FLUX_CHECK(t5_cfg.d_model == flux_params.context_in_dim, "inconsistent model set: T5 d_model ", t5_cfg.d_model, " (",
             config_or_file(files.t5), ") but the transformer's txt_in expects context_in_dim ",
             flux_params.context_in_dim, " (", config_or_file(files.transformer), ")");
  FLUX_CHECK(clip_cfg.hidden_size == flux_params.vec_in_dim, "inconsistent model set: CLIP hidden_size ",
             clip_cfg.hidden_size, " (", config_or_file(files.clip),
             ") but the transformer's vector_in expects vec_in_dim ", flux_params.vec_in_dim, " (",
             config_or_file(files.transformer), ")");
  FLUX_CHECK(ae_params.z_channels * 4 == flux_params.in_channels && flux_params.out_channels == flux_params.in_channels,
             "inconsistent model set: autoencoder z_channels ", ae_params.z_channels, " (", config_or_file(files.vae),
             ") but the transformer's in_channels/out_channels are ", flux_params.in_channels, "/",
             flux_params.out_channels, " (", config_or_file(files.transformer),
             "; expected 4 * z_channels = ", ae_params.z_channels * 4, ")");
  FLUX_CHECK(ae_params.z_channels == 16, "autoencoder (", config_or_file(files.vae),
             "): z_channels expected 16 (FLUX.1 latents), got ", ae_params.z_channels);
  const bool has_guidance = flux_store.contains("guidance_in.in_layer.weight") ||
                            flux_store.contains("time_text_embed.guidance_embedder.linear_1.weight");
  FLUX_CHECK(has_guidance == flux_params.guidance_embed, "transformer (", config_or_file(files.transformer),
             "): guidance_embed is ", flux_params.guidance_embed, " but guidance_in weights are ",
             has_guidance ? "present" : "absent");
  const std::string dtype = first_dtype(flux_store, {"img_in.weight", "x_embedder.weight"});
  const Variant variant_of = flux_params.guidance_embed ? Variant::dev : Variant::schnell;

  // Memory policy: prepacked weights are copies in the product's dtype (16-bit weights widen to f32 where
  // the CPU's bf16 product is slow); per_call reads the mapped storage each time (one panel of scratch). Then
  // the residency plan (residency.h) from the budget, the sizes and each stage's working set.
  const MemoryAvailable avail = memory_available();  // MemAvailable, or less in a memory cgroup
  const uint64_t available = avail.bytes;
  MemoryPolicy memory;
  memory.budget = options.memory_budget > 0 ? options.memory_budget
                  : available > 0           ? default_memory_budget(available)
                                            : UINT64_MAX;
  memory.force_drops = options.low_memory;
  FLUX_CHECK(options.vae_tile >= -1 && (options.vae_tile <= 0 || options.vae_tile >= 64),
             "--vae-tile: expected -1 (automatic), 0 (off) or at least 64 pixels, got ", options.vae_tile);
  memory.vae_tile = options.vae_tile;
  // Each component's size both ways (residency.h, bytes_under): its files, read per call, or its packed copies
  // (a prepacked Linear releases the file pages it copied; what else stays mapped is measured after binding).
  auto sizes_of = [&](const WeightStore& store, Component c) {
    return ComponentBytes{files_bytes(store), packed_weight_bytes(store, c)};
  };
  const ModelBytes sizes{sizes_of(clip_store, Component::clip), sizes_of(t5_store, Component::t5),
                         sizes_of(flux_store, Component::transformer), sizes_of(ae_store, Component::vae)};
  const uint64_t packed = sizes.clip.packed + sizes.t5.packed + sizes.transformer.packed + sizes.vae.packed;
  memory.shapes.clip_hidden = clip_cfg.hidden_size;
  memory.shapes.clip_intermediate = clip_cfg.intermediate_size;
  memory.shapes.clip_heads = clip_cfg.num_attention_heads;
  memory.shapes.t5_d_model = t5_cfg.d_model;
  memory.shapes.t5_inner = t5_cfg.num_heads * t5_cfg.d_kv;
  memory.shapes.t5_d_ff = t5_cfg.d_ff;
  memory.shapes.t5_heads = t5_cfg.num_heads;
  memory.shapes.hidden = flux_params.hidden_size;
  memory.shapes.mlp_hidden = static_cast<int64_t>(flux_params.hidden_size * flux_params.mlp_ratio);
  memory.shapes.in_channels = flux_params.in_channels;
  memory.shapes.vec_in_dim = flux_params.vec_in_dim;
  memory.shapes.vae_ch = ae_params.ch;
  memory.shapes.vae_ch_mult = ae_params.ch_mult;
  if (ae_store.contains("decoder.conv_in.weight")) {
    const int64_t c1 = ae_params.ch * (ae_params.ch_mult.size() > 1 ? ae_params.ch_mult[1] : 1);
    memory.shapes.vae_winograd =
        kernels::conv_winograd_applies(c1, c1, 3, 1, vae_conv_compute(ae_store.get("decoder.conv_in.weight").dtype()));
  }
  memory.shapes.prompt_cache_entries = std::max(0, options.prompt_cache_entries);
  // The first job when the caller knows it (generate), else a request of the default size (1024x1024).
  GenerateRequest first;
  if (options.first_width > 0 && options.first_height > 0) {
    first.width = options.first_width;
    first.height = options.first_height;
  }
  const StageWorkingSet first_ws = working_set(memory.shapes, first.width, first.height, t5_length(variant_of));
  // The packing (residency.h, choose_packing): the fastest that fits the first job.
  const Packing packing = choose_packing(sizes, first_ws, memory.budget, options.low_memory);
  const WeightModes modes = weight_modes(packing);
  const bool transformer_per_call = modes[static_cast<size_t>(Component::transformer)] == WeightMode::per_call;
  memory.weights = packing_name(packing);
  memory.bytes = bytes_under(sizes, packing);
  kernels::set_default_weight_mode(modes[static_cast<size_t>(Component::transformer)]);
  log_info(
      "weights: ", total >> 20, " MiB stored, ", packed >> 20, " MiB if prepacked, ", available >> 20,
      " MiB available, budget ",
      memory.budget == UINT64_MAX ? std::string("unlimited (MemAvailable unknown)") : mib(memory.budget),
      options.memory_budget > 0 ? std::string(" (--memory-budget)") : str_cat(" (", avail.source, " less a margin)"),
      ": ",
      packing == Packing::all    ? "prepacked once"
      : packing == Packing::none ? "reordered per call (low-memory mode)"
                                 : "the transformer and VAE prepacked, CLIP and T5 read per call");
  // A machine that cannot keep every file cached next to the copies: a copied file's pages leave the page cache,
  // so they do not push out the pages of the files read per call (T5 would come from disk at every job).
  const bool evict = evict_copied_files(sizes, packing, first_ws, memory.budget);
  set_evict_released_pages(evict);
  if (evict) log_info("files and packed copies do not fit in memory together: copied files leave the page cache");

  // The plan of the first job (from the estimates; corrected below once the bindings are measured): refuse
  // it now rather than after minutes of loading, and under drop_transformer never hold the transformer and the
  // text encoders together, not even while loading.
  const StagePlan first_plan = plan_residency(memory.bytes, first_ws, memory.budget, memory.force_drops);
  if (options.first_width > 0 && !first_plan.fits)
    throw OverBudget(over_budget_message(first_plan, first.width, first.height));

  // LoRA adapters fixed at load: read and checked against the model before any weight is bound, then merged as the
  // transformer binds or kept for run time (pipeline/loras.h says which when).
  auto loras = std::make_unique<PipelineLoras>(options, flux_params, flux_store, transformer_per_call);

  ByteProgress bytes(progress, total);
  ResidentModels models({files.clip.weights, files.t5.weights, files.transformer.weights, files.vae.weights}, clip_cfg,
                        t5_cfg, flux_params, ae_params, modes);
  models.set_merged_loras(loras->merged());
  // Private memory each binding took (packed copies, converted parameters, and tensors the loaders build,
  // such as diffusers' q/k/v fused into one weight), measured as the growth of RssAnon; and for a prepacked
  // component, the file pages it still holds mapped after packing (growth of RssFile).
  std::array<uint64_t, 4> copies{}, mapped{};
  // after_read: runs once the component's read pass is over, before its (CPU-bound) packing.
  auto timed = [&](Component c, WeightStore& store, const std::function<void()>& after_read = {}) {
    const auto start = Clock::now();
    const char* component = component_name(c);
    const size_t i = static_cast<size_t>(c);
    bytes.begin(component, store, modes[i] == WeightMode::prepacked);
    if (after_read) after_read();
    const uint64_t anon = anonymous_memory_bytes(), file = file_memory_bytes();
    models.bind(c, store);
    copies[i] = std::max(anon, anonymous_memory_bytes()) - anon;
    mapped[i] = std::max(file, file_memory_bytes()) - file;
    bytes.end(component, store);
    log_debug("loaded ", component, " (", files_bytes(store), " bytes) in ", seconds_since(start), " s");
  };
  const bool transformer_first = first_plan.plan == ResidencyPlan::drop_transformer;
  if (transformer_first) {  // bound (checked, measured) and dropped again before the encoders come
    timed(Component::transformer, flux_store);
    models.release(Component::transformer);
    flux_store = WeightStore();  // and its files unmapped
  }
  // The files a job reads per call are read ahead into the page cache where the plan holds them during a job
  // (not under drop_transformer), in the order a job reads them, once the load's own read passes are over: while
  // the transformer packs, or from the end of the load on, next to the first job. A q8_0 T5 read from disk at its
  // first call took 11 s, 6.7 s from the page cache. The pipeline owns the thread (stopped when it goes).
  std::jthread read_ahead;
  auto start_read_ahead = [&] {
    if (transformer_first || read_ahead.joinable()) return;
    const std::pair<Component, const WeightStore*> order[] = {{Component::t5, &t5_store},
                                                              {Component::clip, &clip_store},
                                                              {Component::transformer, &flux_store},
                                                              {Component::vae, &ae_store}};
    std::vector<std::string> paths;
    for (const auto& [c, store] : order) {
      if (modes[static_cast<size_t>(c)] != WeightMode::per_call) continue;
      for (const std::string& f : store->files()) paths.push_back(f);
    }
    read_ahead = read_ahead_files(std::move(paths));
  };
  timed(Component::t5, t5_store);
  timed(Component::clip, clip_store);
  if (!transformer_first)
    timed(Component::transformer, flux_store,
          modes[static_cast<size_t>(Component::transformer)] == WeightMode::prepacked ? start_read_ahead
                                                                                      : std::function<void()>());
  timed(Component::vae, ae_store);
  start_read_ahead();
  bytes.report("done");
  // The plan counts what a binding measurably holds when that is well above the estimate (the estimate stays
  // otherwise: small differences are allocator noise, and the plan is then the same on every load).
  for (Component c : {Component::clip, Component::t5, Component::transformer, Component::vae}) {
    ComponentBytes& b = c == Component::clip          ? memory.bytes.clip
                        : c == Component::t5          ? memory.bytes.t5
                        : c == Component::transformer ? memory.bytes.transformer
                                                      : memory.bytes.vae;
    const uint64_t held = mapped[static_cast<size_t>(c)];
    if (modes[static_cast<size_t>(c)] == WeightMode::prepacked && held > (uint64_t{16} << 20)) {
      log_info("memory: ", component_name(c), " keeps ", mib(held),
               " of its files mapped after packing; the plan counts them");
      b.stored = held;
    }
    const uint64_t measured = copies[static_cast<size_t>(c)];
    if (measured <= b.packed + std::max<uint64_t>(uint64_t{16} << 20, b.stored / 20)) continue;
    log_info("memory: ", component_name(c), " holds ", mib(measured), " of private copies (", mib(b.packed),
             " estimated); the plan counts them");
    b.packed = measured;
  }

  auto pipeline =
      std::make_unique<FluxPipeline>(std::move(clip_tok), std::move(t5_tok), std::move(models), dtype,
                                     static_cast<size_t>(std::max(0, options.prompt_cache_entries)), std::move(memory));
  pipeline->set_loras(std::move(loras));
  pipeline->keep_read_ahead(std::move(read_ahead));
  // The plan for a request of the default size (1024x1024), logged; what it drops before a first job goes now.
  pipeline->adopt_plan(first, options.first_width > 0 ? "the first job," : "the default size,");
  log_info("loaded ", pipeline->describe(), " in ", seconds_since(t0), " s");
  return pipeline;
}

}  // namespace flux
