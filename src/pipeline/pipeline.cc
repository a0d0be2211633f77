// Pipeline::load (discovery, consistency checks, byte progress) and run (BFL cli.py main: prepare, get_schedule,
// denoise, unpack, ae.decode).
#include "pipeline/pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>

#include "base/log.h"
#include "base/mapped_file.h"
#include "base/system.h"
#include "base/thread_pool.h"
#include "io/weight_store.h"
#include "kernels/matmul.h"
#include "models/autoencoder.h"
#include "models/clip_text.h"
#include "models/flux.h"
#include "models/t5_encoder.h"
#include "pipeline/model_discovery.h"
#include "pipeline/preview.h"
#include "pipeline/prompt_cache.h"
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
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t files_bytes(const WeightStore& store);

// Byte progress over the components. Unless in low-memory mode, begin() reads every page of the component's
// files (the disk read of a real model) and reports bytes as they come in, so the model binding that follows
// finds them in the page cache; in low-memory mode (the files may not fit in RAM next to the converted weights)
// the bytes are reported when the component is bound, without a read pass that could be evicted again.
class ByteProgress {
 public:
  ByteProgress(const LoadProgress& sink, uint64_t total, bool read_pages)
      : sink_(sink), total_(total), read_pages_(read_pages) {}
  void begin(const std::string& component, const WeightStore& store) {
    start_ = done_;
    report(component);
    if (!read_pages_) return;
    for (const std::string& path : store.files()) {
      const auto file = MappedFile::open(path);
      constexpr size_t kChunk = size_t{64} << 20;
      const uint8_t* data = file->data();
      for (size_t off = 0; off < file->size(); off += kChunk) {
        const size_t n = std::min(kChunk, file->size() - off);
        file->prefetch(off, n);
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < n; i += 4096) sink = sink + data[off + i];
        done_ += n;
        report(component);
      }
    }
  }
  void end(const std::string& component, const WeightStore& store) {
    done_ = start_ + files_bytes(store);
    report(component);
  }
  void report(const std::string& component) {
    if (sink_) sink_(component, std::min(done_, total_), total_);
  }

 private:
  const LoadProgress& sink_;
  uint64_t total_ = 0, done_ = 0, start_ = 0;
  bool read_pages_ = true;
};

uint64_t files_bytes(const WeightStore& store) {
  uint64_t n = 0;
  for (const auto& f : store.files()) n += std::filesystem::file_size(f);
  return n;
}

std::string first_dtype(const WeightStore& store, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (store.contains(n)) return dtype_name(store.get(n).dtype());
  return "?";
}

class FluxPipeline final : public Pipeline {
 public:
  FluxPipeline(ClipTokenizer clip_tok, T5Tokenizer t5_tok, ClipTextModel clip, T5Encoder t5, Flux flux, AutoEncoder ae,
               std::string dtype, size_t cache_entries)
      : prompt_cache_(cache_entries),
        clip_tok_(std::move(clip_tok)),
        t5_tok_(std::move(t5_tok)),
        clip_(std::move(clip)),
        t5_(std::move(t5)),
        flux_(std::move(flux)),
        ae_(std::move(ae)),
        dtype_(std::move(dtype)) {}

  Variant variant() const override { return flux_.params().guidance_embed ? Variant::dev : Variant::schnell; }
  int default_steps() const { return flux::default_steps(variant()); }
  int t5_length() const { return flux::t5_length(variant()); }

  std::string describe() const override {
    const FluxParams& p = flux_.params();
    return str_cat("FLUX.1-", variant_name(variant()), " (", dtype_, "; transformer hidden ", p.hidden_size, ", ",
                   p.depth, "+", p.depth_single_blocks, " blocks, ", p.num_heads, " heads; T5 d_model ",
                   t5_.config().d_model, " x ", t5_.config().num_layers, " layers; CLIP hidden ",
                   clip_.config().hidden_size, "; VAE ch ", ae_.params().ch, "; default ", default_steps(),
                   " steps, T5 length ", t5_length(), ")");
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
  }

  GenerateResult run(const GenerateRequest& r, const ProgressSink& progress, std::stop_token stop) override {
    validate(r);
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
    const PromptCache::Entry text = prompt_cache_.get_or_compute(PromptKey::of_ids(clip_ids.ids, t5_ids.ids), [&] {
      PromptEmbedding e;
      e.pooled = clip_.forward(clip_ids.ids, clip_ids.pool_index).pooled;  // [vec_in_dim]
      if (stop.stop_requested()) throw Cancelled();
      e.txt = t5_.forward(t5_ids.ids);  // [L, context_in_dim]
      return e;
    });
    if (stop.stop_requested()) throw Cancelled();
    const Tensor& y = text->pooled;
    const Tensor& txt = text->txt;
    result.timings.encode_text_s = seconds_since(t0);

    // Noise and packing.
    const auto t1 = Clock::now();
    const int64_t h = r.height / 8, w = r.width / 8;
    Tensor noise =
        r.noise.defined() ? r.noise.to(DType::f32).reshape(Shape{16, h, w}) : get_noise(r.height, r.width, r.seed);
    const Tensor img = pack_latent(noise);  // [S, 64]
    const Tensor img_ids = make_img_ids(h, w);
    const Tensor txt_ids = make_txt_ids(txt.dim(0));
    const std::vector<float> timesteps = get_schedule(result.steps, img.dim(0), variant() == Variant::dev);
    const int total = result.steps;
    emit(Stage::denoise, 0, total);
    if (r.preview) ensure_preview();
    VelocityFn model = [&](const Tensor& x, float t) {
      return flux_.forward(x, img_ids, txt, txt_ids, t, y, r.guidance, stop);
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
    const Tensor latent = denoise(model, img, timesteps, on_step, stop);
    result.timings.denoise_s = seconds_since(t1);

    // Decode.
    const auto t2 = Clock::now();
    emit(Stage::decode, total, total);
    const Tensor image = ae_.decode(unpack_latent(latent, h, w));  // [3, H, W]
    result.image = image_from_tensor(image);
    result.timings.decode_s = seconds_since(t2);
    result.timings.total_s = seconds_since(t0);
    return result;
  }

 private:
  void ensure_preview() {
    std::call_once(preview_once_, [&] {
      const auto t0 = Clock::now();
      preview_ = LatentPreview::fit([&](const Tensor& z) { return ae_.decode(z); });
      log_debug("latent preview map fitted in ", seconds_since(t0), " s");
    });
  }

  PromptCache prompt_cache_;
  ClipTokenizer clip_tok_;
  T5Tokenizer t5_tok_;
  ClipTextModel clip_;
  T5Encoder t5_;
  Flux flux_;
  AutoEncoder ae_;
  std::string dtype_;
  std::once_flag preview_once_;
  std::optional<LatentPreview> preview_;
};

std::string config_or_file(const ComponentFiles& c) { return c.config.empty() ? c.weights : c.config; }

// Bytes every float weight would take prepacked: its element count times the product dtype's size.
uint64_t packed_weight_bytes(std::initializer_list<const WeightStore*> stores) {
  const uint64_t narrow = kernels::linear_compute_dtype() == DType::f32 ? 4 : 2;
  uint64_t bytes = 0;
  for (const WeightStore* store : stores) {
    for (const std::string& name : store->names()) {
      const Tensor t = store->get(name);
      if (!is_float(t.dtype())) continue;
      const uint64_t n = static_cast<uint64_t>(t.numel());
      bytes += n * (t.dtype() == DType::f32 || t.dtype() == DType::f64 ? 4 : narrow);
    }
  }
  return bytes;
}

}  // namespace

std::unique_ptr<Pipeline> Pipeline::load(const ModelPaths& paths, const LoadOptions& options,
                                         const LoadProgress& progress) {
  const auto t0 = Clock::now();
  if (options.n_threads > 0) set_default_threads(options.n_threads);
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

  // Memory policy: prepacked weights are copies in the product's dtype (16-bit weights widen to f32 where
  // the CPU's bf16 product is slow); per_call reads the mapped storage each time (one layer of scratch).
  const uint64_t packed = packed_weight_bytes({&t5_store, &clip_store, &flux_store, &ae_store});
  const uint64_t available = available_memory_bytes();
  const bool low_memory = options.low_memory || (available > 0 && packed > available / 10 * 7);
  kernels::set_default_weight_mode(low_memory ? kernels::WeightMode::per_call : kernels::WeightMode::prepacked);
  log_info("weights: ", total >> 20, " MiB stored, ", packed >> 20, " MiB if prepacked, ", available >> 20,
           " MiB available: ", low_memory ? "reordered per call (low-memory mode)" : "prepacked once");

  ByteProgress bytes(progress, total, !low_memory);
  auto timed = [&](const char* component, WeightStore& store, auto&& load) {
    const auto start = Clock::now();
    bytes.begin(component, store);
    auto model = load();
    bytes.end(component, store);
    log_debug("loaded ", component, " (", files_bytes(store), " bytes) in ", seconds_since(start), " s");
    return model;
  };
  T5Encoder t5 = timed("t5", t5_store, [&] { return T5Encoder::load(t5_store, t5_cfg); });
  ClipTextModel clip = timed("clip", clip_store, [&] { return ClipTextModel::load(clip_store, clip_cfg); });
  Flux flux = timed("transformer", flux_store, [&] { return Flux::load(flux_store, flux_params); });
  AutoEncoder ae = timed("vae", ae_store, [&] { return AutoEncoder::load(ae_store, ae_params); });
  bytes.report("done");

  auto pipeline = std::make_unique<FluxPipeline>(std::move(clip_tok), std::move(t5_tok), std::move(clip), std::move(t5),
                                                 std::move(flux), std::move(ae), dtype,
                                                 static_cast<size_t>(std::max(0, options.prompt_cache_entries)));
  log_info("loaded ", pipeline->describe(), " in ", seconds_since(t0), " s");
  return pipeline;
}

}  // namespace flux
