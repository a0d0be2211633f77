// `fluxcpp generate`: one image from a prompt. Model from --model DIR (diffusers folder or a folder of BFL single
// files) or --model ORG/NAME[@REV][:FILE] (the Hugging Face cache; --download fetches what it lacks) and/or single files (--diffusion-model, --vae, --clip-l, --t5xxl, --tokenizers). Writes a PNG with the
// generation parameters in a tEXt chunk "parameters". A progress bar (stage, step k/N, elapsed, ETA) goes to
// stderr, per-stage timings at the end. --stats-json FILE writes each stage's wall time and resident-memory peak
// (model loading per component, text encoding, each denoising step, decoding) for bench/full_pipeline.sh.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "base/error.h"
#include "base/system.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/model_by_name.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "kernels/matmul.h"
#include "pipeline/img2img.h"
#include "pipeline/pipeline.h"

namespace flux::cli {
namespace {

struct GenerateOptions {
  ModelPaths paths;
  std::string prompt;
  int width = 1024, height = 1024;
  int steps = 0;
  float guidance = 3.5f;
  uint64_t seed = 0;
  std::string noise;
  std::string init_image;  // --init-image: img2img from this picture (PNG or JPEG)
  double strength = 0.6;   // --strength (img2img)
  std::string output = "out.png";
  int threads = 0;
  bool quiet = false;
  std::string memory_budget;  // "8G", ... (parse_byte_size); "" = from MemAvailable
  bool low_memory = false;
  int vae_tile = -1;  // --vae-tile: pixels; 0 = off; -1 = automatic (LoadOptions::vae_tile)
  std::string precision = "auto";  // --precision: auto, f32, bf16 or int8 (kernels::parse_precision)
  std::string stats_json;  // per-stage times and peak RSS (--stats-json)
  std::vector<std::string> loras;  // --lora FILE[:STRENGTH], applied in this order
  bool lora_lenient = false;       // --lora-lenient
  std::string lora_mode = "auto";  // --lora-mode: auto, merge or runtime (parse_lora_mode)
  bool download = false;           // --download: fetch a model named ORG/NAME that the cache lacks
};

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(uint64_t{1} << 30));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1 << 20));
  return buf;
}

// One status line on stderr: rewritten in place on a terminal, one line per update otherwise.
class StatusLine {
 public:
  explicit StatusLine(bool quiet) : quiet_(quiet), tty_(isatty(2) != 0) {}
  void show(const std::string& s, bool important = false) {
    if (quiet_) return;
    if (tty_) {
      std::fprintf(stderr, "\r%-79s", s.c_str());
      std::fflush(stderr);
      dirty_ = true;
    } else if (important) {
      std::fprintf(stderr, "%s\n", s.c_str());
    }
  }
  void end() {
    if (dirty_) std::fprintf(stderr, "\n");
    dirty_ = false;
  }

 private:
  bool quiet_, tty_, dirty_ = false;
};

std::string bar(int done, int total, int width = 20) {
  std::string s = "[";
  const int filled = total > 0 ? done * width / total : 0;
  for (int i = 0; i < width; ++i) s += i < filled ? '#' : '.';
  return s + "]";
}

// Stage statistics: wall time and the RSS high-water mark per stage. The kernel's VmHWM is reset at each stage
// boundary by writing "5" to /proc/self/clear_refs (Linux >= 4.0), so each peak is the stage's own; the overall
// peak is the largest. RssAnon / RssFile at the end of a stage tell heap from mapped weights.
class StageStats {
 public:
  explicit StageStats(bool enabled) : enabled_(enabled) {}
  // Ends the current stage (if any) and starts `name`.
  void begin(const std::string& name) {
    if (!enabled_) return;
    end();
    name_ = name;
    start_ = std::chrono::steady_clock::now();
    reset_peak_resident_memory();
  }
  void end() {
    if (!enabled_ || name_.empty()) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    stages_.push_back({{"stage", name_},
                       {"seconds", s},
                       {"peak_rss_mib", to_mib(peak_resident_memory_bytes())},
                       {"rss_anon_mib", to_mib(anonymous_memory_bytes())},
                       {"rss_file_mib", to_mib(file_memory_bytes())}});
    name_.clear();
  }
  void write(const std::string& path, nlohmann::json extra) {
    if (!enabled_) return;
    end();
    double peak = 0, total = 0;
    for (const auto& st : stages_) {
      peak = std::max(peak, st["peak_rss_mib"].get<double>());
      total += st["seconds"].get<double>();
    }
    extra["stages"] = stages_;
    extra["peak_rss_mib"] = peak;
    extra["total_seconds"] = total;
    std::ofstream out(path);
    out << extra.dump(1) << "\n";
    FLUX_CHECK(out.good(), "--stats-json: cannot write ", path);
  }

 private:
  static double to_mib(uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }
  bool enabled_;
  std::string name_;
  std::chrono::steady_clock::time_point start_;
  nlohmann::json stages_ = nlohmann::json::array();
};

Tensor read_noise(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  FLUX_CHECK(f.find("noise") != nullptr, path, ": no tensor 'noise' (expected F32 [1, 16, H/8, W/8])");
  const Tensor t = f.tensor("noise");
  FLUX_CHECK(
      is_float(t.dtype()) && (t.ndim() == 4 || t.ndim() == 3) && t.dim(-3) == 16 && (t.ndim() == 3 || t.dim(0) == 1),
      path, ": tensor 'noise' expected [1, 16, H/8, W/8], got ", t.describe());
  return t.to(DType::f32).clone();
}

// --lora FILE[:STRENGTH] (strength 1 when absent; a ':' whose tail is not a number belongs to the file name).
LoraSpec parse_lora_arg(const std::string& arg) {
  LoraSpec spec{arg, 1.0f};
  const size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon > 0) {
    const std::string tail = arg.substr(colon + 1);
    char* end = nullptr;
    const float s = std::strtof(tail.c_str(), &end);
    if (!tail.empty() && end == tail.c_str() + tail.size()) {
      FLUX_CHECK(std::isfinite(s), "--lora ", arg, ": strength must be finite, got ", tail);
      spec = {arg.substr(0, colon), s};
    }
  }
  FLUX_CHECK(std::filesystem::is_regular_file(spec.path), "--lora ", arg, ": no such file: ", spec.path);
  return spec;
}

std::string lora_params(const std::vector<LoraSpec>& loras) {
  std::string s;
  for (const LoraSpec& l : loras)
    s += str_cat(s.empty() ? "; loras: " : ", ", std::filesystem::path(l.path).filename().string(), ":", l.strength);
  return s;
}

int run_generate(const GenerateOptions& o, bool width_given, bool height_given, bool strength_given) {
  using Clock = std::chrono::steady_clock;
  GenerateRequest request;
  request.prompt = o.prompt;
  request.width = o.width;
  request.height = o.height;
  request.steps = o.steps;
  request.guidance = o.guidance;
  request.seed = o.seed;
  if (!o.noise.empty()) {
    request.noise = read_noise(o.noise);
    const int nh = static_cast<int>(request.noise.dim(-2)) * 8, nw = static_cast<int>(request.noise.dim(-1)) * 8;
    if (!width_given) request.width = nw;
    if (!height_given) request.height = nh;
    FLUX_CHECK(request.width == nw && request.height == nh, "--noise ", o.noise, ": ", request.noise.describe(),
               " is a ", nw, "x", nh, " image's noise, but the size asked is ", request.width, "x", request.height);
  }
  if (!o.init_image.empty()) {
    FLUX_CHECK(std::isfinite(o.strength) && o.strength >= 0 && o.strength <= 1,
               "--strength: expected a number in [0, 1], got ", o.strength);
    if (o.steps > 0) img2img_t_start(o.steps, o.strength);  // too few steps: refused before loading
    request.init_image = std::make_shared<const Image>(read_image(o.init_image));  // names the file and the problem
    request.strength = o.strength;
    // Without --width/--height (or --noise): the picture's own size, each side rounded down to a multiple of 16.
    if (!width_given && !height_given && o.noise.empty()) {
      request.width = std::max(16, request.init_image->width / 16 * 16);
      request.height = std::max(16, request.init_image->height / 16 * 16);
    }
  } else {
    FLUX_CHECK(!strength_given, "--strength: only with --init-image (image-to-image)");
  }
  check_image_size(request.width, request.height);  // before loading anything
  if (o.threads > 0) set_default_threads(o.threads);

  ModelPaths paths = o.paths;
  if (has_model_name(paths)) {
    hub::HubOptions hub_options = hub::HubOptions::from_environment();
    hub_options.allow_download = o.download;
    resolve_model_names(paths, hub_options, download_progress_bar(o.quiet));
  }

  StatusLine status(o.quiet);
  StageStats stats(!o.stats_json.empty());
  stats.begin("load");
  std::string loading;
  const auto t0 = Clock::now();
  LoadOptions load_options;
  load_options.n_threads = o.threads;
  load_options.low_memory = o.low_memory;
  load_options.vae_tile = o.vae_tile;
  load_options.precision = kernels::parse_precision(o.precision);
  if (!o.memory_budget.empty()) load_options.memory_budget = parse_byte_size("--memory-budget", o.memory_budget);
  load_options.first_width = request.width;  // refused before loading when it cannot fit
  load_options.first_height = request.height;
  for (const std::string& l : o.loras) load_options.loras.push_back(parse_lora_arg(l));
  load_options.lora_lenient = o.lora_lenient;
  load_options.lora_mode = parse_lora_mode(o.lora_mode);
  auto pipeline =
      Pipeline::load(paths, load_options, [&](const std::string& component, uint64_t done, uint64_t total) {
        if (component != loading && component != "done") stats.begin("load " + component);
        loading = component;
        const int pct = total ? static_cast<int>(100.0 * done / total) : 100;
        status.show(str_cat("loading ", component, " ", bar(pct, 100), " ", pct, "% (", human_bytes(done), " / ",
                            human_bytes(total), ")"));
      });
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  status.end();
  pipeline->validate(request);

  double denoise_start = -1;
  const GenerateResult result =
      pipeline->run(request,
                    [&](const ProgressEvent& e) {
                      char line[160];
                      if (e.stage == Stage::encode_text) stats.begin("encode_text (CLIP + T5)");
                      if (e.stage == Stage::denoise && e.step < e.total)
                        stats.begin(str_cat("denoise step ", e.step + 1, "/", e.total));
                      if (e.stage == Stage::decode) stats.begin("vae decode");
                      if (e.stage == Stage::encode_image) stats.begin("vae encode (init image)");
                      if (e.stage == Stage::encode_text) {
                        std::snprintf(line, sizeof line, "encoding the prompt ...  elapsed %.1f s", e.elapsed_s);
                      } else if (e.stage == Stage::encode_image) {
                        std::snprintf(line, sizeof line, "encoding the init image ...  elapsed %.1f s", e.elapsed_s);
                      } else if (e.stage == Stage::denoise) {
                        if (e.step == 0) denoise_start = e.elapsed_s;
                        const double per_step = e.step > 0 ? (e.elapsed_s - denoise_start) / e.step : 0;
                        char eta[32] = "?";
                        if (e.step > 0) std::snprintf(eta, sizeof eta, "%.1f s", per_step * (e.total - e.step));
                        std::snprintf(line, sizeof line, "denoise %s step %d/%d  elapsed %.1f s  ETA %s",
                                      bar(e.step, e.total).c_str(), e.step, e.total, e.elapsed_s, eta);
                      } else {
                        std::snprintf(line, sizeof line, "decoding ...  elapsed %.1f s", e.elapsed_s);
                      }
                      status.show(line, e.stage == Stage::denoise && e.step == e.total);
                    },
                    {});
  status.end();
  stats.end();

  const int steps = result.steps;
  const std::string params =
      str_cat("prompt: ", request.prompt, "; width: ", request.width, "; height: ", request.height, "; steps: ", steps,
              pipeline->variant() == Variant::dev ? str_cat("; guidance: ", request.guidance) : std::string(),
              "; seed: ", o.noise.empty() ? std::to_string(result.seed) : "-",
              o.noise.empty() ? "" : "; noise: " + o.noise,
              o.init_image.empty() ? std::string()
                                   : str_cat("; init image: ", o.init_image, "; strength: ", o.strength,
                                             "; steps run: ", result.steps_run),
              lora_params(load_options.loras), "; model: ", pipeline->describe(),
              "; sampler: euler");
  stats.begin("write png");
  write_png(o.output, result.image, {{"parameters", params}});
  stats.write(o.stats_json, {{"model", pipeline->describe()},
                             {"width", request.width},
                             {"height", request.height},
                             {"steps", steps},
                             {"threads", default_pool().n_threads()},
                             {"load_seconds", load_s},
                             {"encode_text_seconds", result.timings.encode_text_s},
                             {"clip_seconds", result.timings.clip_s},
                             {"t5_seconds", result.timings.t5_s},
                             {"denoise_seconds", result.timings.denoise_s},
                             {"decode_seconds", result.timings.decode_s}});
  if (result.prompt_truncated && !o.quiet)
    std::fprintf(stderr, "warning: the prompt was truncated (CLIP keeps 77 tokens, T5 %d)\n",
                 t5_length(pipeline->variant()));
  const StageTimings& t = result.timings;
  if (!o.quiet)
    std::fprintf(
        stderr,
        "timings: load %.2f s, encode_text %.2f s (CLIP %.2f, T5 %.2f), denoise %.2f s (%.3f s/step), decode %.2f s, "
        "total %.2f s\n",
        load_s, t.encode_text_s, t.clip_s, t.t5_s, t.denoise_s,
        result.steps_run > 0 ? t.denoise_s / result.steps_run : 0.0, t.decode_s,
        t.total_s);
  std::printf("wrote %s (%dx%d, %d steps, seed %llu)\n", o.output.c_str(), result.image.width, result.image.height,
              steps, static_cast<unsigned long long>(result.seed));
  return 0;
}

const CommandRegistrar reg(
    {"generate", "generate an image from a prompt", [](CLI::App& sub) {
       auto o = std::make_shared<GenerateOptions>();
       sub.add_option("--model", o->paths.model_dir,
                      "model folder (diffusers layout or BFL single files), or a name ORG/NAME[@REVISION][:FILE] "
                      "looked up in the Hugging Face cache");
       sub.add_flag("--download", o->download,
                    "download a named model's missing files from the hub (HF_ENDPOINT, HF_TOKEN) into the cache");
       sub.add_option("--diffusion-model", o->paths.diffusion_model,
                      "transformer file (flux1-schnell/dev.safetensors, BFL names)");
       sub.add_option("--vae", o->paths.vae, "autoencoder file (ae.safetensors)");
       sub.add_option("--clip-l", o->paths.clip_l, "CLIP-L text encoder (clip_l.safetensors)");
       sub.add_option("--t5xxl", o->paths.t5xxl, "T5-XXL encoder (t5xxl_fp16.safetensors)");
       sub.add_option("--tokenizers", o->paths.tokenizers, "folder with tokenizer/ + tokenizer_2/ (or clip-l/ + t5/)");
       sub.add_option("-p,--prompt", o->prompt, "the prompt")->required();
       auto* w = sub.add_option("-W,--width", o->width, "width in pixels, multiple of 16 (1024)");
       auto* h = sub.add_option("-H,--height", o->height, "height in pixels, multiple of 16 (1024)");
       sub.add_option("--steps", o->steps, "sampling steps (default: schnell 4, dev 28)");
       sub.add_option("--guidance", o->guidance, "guidance strength, dev only (3.5)");
       auto* s =
           sub.add_option("--seed", o->seed, "noise seed (torch.manual_seed semantics: low 32 bits; default: random)");
       sub.add_option("--noise", o->noise, "initial noise: safetensors with tensor 'noise' F32 [1, 16, H/8, W/8]");
       sub.add_option("--init-image", o->init_image,
                      "image-to-image: start from this picture (PNG or JPEG), scaled to cover the size and centre "
                      "cropped");
       auto* st = sub.add_option("--strength", o->strength,
                                 "img2img: how much to change, 0..1 (1 = ignore the picture); runs the last "
                                 "int(steps * strength) or so of the steps")
                      ->capture_default_str();
       sub.add_option("-o,--output", o->output, "output PNG (out.png)");
       sub.add_option("-t,--threads", o->threads, "compute threads (default: all cores)");
       sub.add_flag("-q,--quiet", o->quiet, "no progress output");
       sub.add_option("--lora", o->loras,
                      "LoRA adapter FILE[:STRENGTH] (kohya, ComfyUI, diffusers/PEFT or XLabs safetensors; strength "
                      "1 by default); repeat to stack them, applied in order");
       sub.add_flag("--lora-lenient", o->lora_lenient,
                    "LoRA keys that name no module of the model: one warning listing them instead of an error");
       sub.add_option("--lora-mode", o->lora_mode,
                      "auto (merged into 16/32-bit float weights at load; at run time for quantized weights or "
                      "--low-memory), merge, or runtime (low-rank side products, base weights untouched)")
           ->capture_default_str();
       sub.add_option("--stats-json", o->stats_json,
                      "write per-stage wall times and peak RSS (VmHWM, reset per stage) to this JSON file");
       sub.add_option("--memory-budget", o->memory_budget,
                      "bytes to stay within, e.g. 8G or 500M (default: MemAvailable, or a memory cgroup's free room when smaller, less 10% / 512M)");
       sub.add_flag("--low-memory", o->low_memory, "reorder weights per call and drop each stage's weights after it");
       sub.add_option("--vae-tile", o->vae_tile,
                      "VAE decode in overlapping tiles of at most N px a side, blended (less memory, slightly different "
                      "image); 0 = never; -1 = automatic: 512 px tiles when the untiled decode's activations would "
                      "exceed 2 GiB (images above about 840x840)")
           ->capture_default_str();
       sub.add_option("--precision", o->precision,
                      "products: auto (bf16 where the CPU's bf16 is faster, else f32), f32 (exact), bf16 (needs "
                      "AVX512_BF16) or int8 (weights per output feature, activations per token)")
           ->capture_default_str();
       return [o, w, h, s, st] {
         if (s->count() == 0) o->seed = std::random_device{}();  // torch seeds use 32 bits
         return run_generate(*o, w->count() > 0, h->count() > 0, st->count() > 0);
       };
     }});

}  // namespace
}  // namespace flux::cli
