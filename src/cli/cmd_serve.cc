// `fluxcpp serve`: the HTTP server (DESIGN.md, "HTTP API"). Binds first (port 0 = any free port, printed as
// "listening on http://HOST:PORT"), then loads the models in the background; /health answers throughout. A model
// named ORG/NAME is looked up in the Hugging Face cache first; with --allow-download its missing files are
// downloaded by the engine's loader thread (/health: `downloading`).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "base/log.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/model_by_name.h"
#include "cluster/cluster_api.h"
#include "cluster/cluster_worker.h"
#include "engine/engine.h"
#include "io/image.h"
#include "io/image_resize.h"
#include "kernels/matmul.h"
#include "pipeline/lora_dir.h"
#include "pipeline/pipeline.h"
#include "server/http_server.h"

namespace flux::cli {
namespace {

struct ServeOptions {
  ModelPaths paths;
  server::ServerOptions server;
  int queue_size = 8;
  double result_ttl_s = 3600;  // --job-ttl (--result-ttl)
  int max_jobs_kept = 100;
  int threads = 0;
  bool warmup = false;
  bool queue_while_loading = false;
  bool low_memory = false;
  int vae_tile = -1;               // --vae-tile: pixels; 0 = off; -1 = automatic (LoadOptions::vae_tile)
  std::string precision = "auto";  // --precision: auto, f32, bf16 or int8 (kernels::parse_precision)
  std::string memory_budget;       // "8G", ... (parse_byte_size); "" = from MemAvailable
  bool lora_lenient = false;       // --lora-lenient (per-request adapters)
  bool allow_download = false;     // --allow-download: fetch a named model on the loader thread
  std::string role = "all";        // --role: all (one process), api or worker (over Redis, src/cluster)
  std::string queue;               // --queue redis://HOST:PORT[/DB]
  int max_tries = 3;               // --max-tries
  int visibility_ms = 30000;       // --visibility-ms
  std::string node_name;           // --node-name (default HOST-PID)
};

// The cluster options of --role api|worker; throws naming the flag.
cluster::ClusterOptions cluster_options(const ServeOptions& o) {
  FLUX_CHECK(!o.queue.empty(), "--role ", o.role,
             ": expected --queue redis://HOST:PORT[/DB] (the Redis that holds the jobs)");
  FLUX_CHECK(o.max_tries >= 1, "--max-tries: expected >= 1, got ", o.max_tries);
  FLUX_CHECK(o.visibility_ms >= 100, "--visibility-ms: expected >= 100, got ", o.visibility_ms);
  cluster::ClusterOptions c;
  c.url = cluster::RedisUrl::parse(o.queue, "--queue");
  c.max_tries = o.max_tries;
  c.visibility_ms = o.visibility_ms;
  c.queue_size = static_cast<size_t>(o.queue_size);
  c.result_ttl_s = o.result_ttl_s;
  c.lora_dir = o.server.limits.lora_dir;
  c.max_image_pixels = static_cast<uint64_t>(o.server.limits.max_image_pixels);
  c.name = o.node_name;
  if (c.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    c.name = str_cat(host, "-", getpid());
  }
  return c;
}

// The image scaled down (aspect kept) so that its longest side is at most `max_side` pixels.
Image thumbnail(const Image& image, int max_side) {
  const int longest = std::max(image.width, image.height);
  if (longest <= max_side) return image;
  const double scale = static_cast<double>(max_side) / longest;
  const int w = std::max(1, static_cast<int>(std::lround(image.width * scale)));
  const int h = std::max(1, static_cast<int>(std::lround(image.height * scale)));
  return resize_cover(image, std::min(w, max_side), std::min(h, max_side));
}

int serve(const ServeOptions& o) {
  FLUX_CHECK(o.role == "all" || o.role == "api" || o.role == "worker", "--role: expected all, api or worker, got \"",
             o.role, "\"");
  if (o.role == "api") {  // no model here: the workers load it
    const cluster::ClusterOptions c = cluster_options(o);
    FLUX_CHECK(o.queue_size >= 1, "--queue-size: expected >= 1, got ", o.queue_size);
    server::ServerOptions options = o.server;
    options.max_queue = o.queue_size;
    // Without a LoRA folder of its own the node passes names on (syntax checked) and the worker resolves them.
    options.limits.lora_names_only = options.limits.lora_dir.empty();
    if (!options.limits.lora_dir.empty()) list_lora_dir(options.limits.lora_dir);  // throws naming the folder
    return server::run_server(options, [c] {
      return std::make_unique<cluster::ClusterApi>(
          c, [](const Image& image) { return encode_png(thumbnail(image, 256)); });
    });
  }
  const std::optional<cluster::ClusterOptions> worker =
      o.role == "worker" ? std::optional(cluster_options(o)) : std::nullopt;
  FLUX_CHECK(!o.paths.model_dir.empty() || !o.paths.diffusion_model.empty(),
             "serve: expected --model DIR or --diffusion-model FILE");
  FLUX_CHECK(o.queue_size >= 1, "--queue-size: expected >= 1, got ", o.queue_size);
  FLUX_CHECK(o.max_jobs_kept >= 0, "--max-jobs-kept: expected >= 0, got ", o.max_jobs_kept);
  FLUX_CHECK(o.result_ttl_s >= 0, "--job-ttl: expected >= 0 seconds, got ", o.result_ttl_s);
  const std::string& basic = o.server.access.basic;
  FLUX_CHECK(basic.empty() || (basic.find(':') != std::string::npos && basic.front() != ':'),
             "--api-auth: expected USER:PASSWORD, got a value without a user and a colon");
  FLUX_CHECK(o.server.limits.max_pixels >= 64 * 64, "--max-pixels: expected >= 4096, got ", o.server.limits.max_pixels);
  FLUX_CHECK(o.server.limits.max_steps >= 1, "--max-steps: expected >= 1, got ", o.server.limits.max_steps);
  FLUX_CHECK(o.server.limits.max_image_pixels >= 1, "--max-image-pixels: expected >= 1, got ",
             o.server.limits.max_image_pixels);
  if (!o.server.limits.lora_dir.empty()) {
    const auto listed = list_lora_dir(o.server.limits.lora_dir);  // throws naming the folder if unreadable
    log_info("lora: ", listed.size(), " adapter(s) in ", o.server.limits.lora_dir);
  }
  ModelPaths paths = o.paths;
  if (!o.allow_download && has_model_name(paths))  // from the cache alone: refused here, before the server starts
    resolve_model_names(paths, hub::HubOptions::from_environment(), {});
  const uint64_t budget = o.memory_budget.empty() ? 0 : parse_byte_size("--memory-budget", o.memory_budget);
  // Refused here, before the server starts, rather than in the background load.
  const kernels::Precision precision = kernels::parse_precision(o.precision);
  kernels::check_precision_supported(precision);
  server::ServerOptions options = o.server;
  options.max_queue = o.queue_size;
  // The default size is 1024x1024, or the largest square multiple of 16 within --max-pixels.
  while (static_cast<int64_t>(options.limits.default_width) * options.limits.default_height > options.limits.max_pixels)
    options.limits.default_width = options.limits.default_height = options.limits.default_width - 16;
  return server::run_server(options, [&o, paths, budget, precision, worker] {
    EngineOptions e;
    e.queue_size = static_cast<size_t>(o.queue_size);
    e.result_ttl_s = o.result_ttl_s;
    e.max_finished_jobs = static_cast<size_t>(o.max_jobs_kept);
    e.queue_while_loading = o.queue_while_loading;
    e.n_threads = o.threads;
    e.warmup = o.warmup;
    e.encoder = [](const Image& image) { return encode_png(image); };
    e.thumbnail_encoder = [](const Image& image) { return encode_png(thumbnail(image, 256)); };
    LoadOptions load;
    load.n_threads = 0;  // the engine sizes the kernel pool itself, at low priority (e.n_threads)
    load.low_memory = o.low_memory;
    load.vae_tile = o.vae_tile;
    load.memory_budget = budget;
    load.precision = precision;
    load.lora_lenient = o.lora_lenient;
    // A model named ORG/NAME is resolved (and downloaded) on the loader thread: /health answers `downloading`
    // meanwhile and a shutdown stops the transfer at its next progress report.
    auto model = std::make_shared<ModelPaths>(paths);
    if (has_model_name(*model)) {
      hub::HubOptions hub_options = hub::HubOptions::from_environment();
      hub_options.allow_download = true;
      e.fetch = [model, hub_options](const DownloadStatusSink& sink) {
        DownloadStatus last;  // an empty report (a metadata request under way) repeats the last one
        resolve_model_names(*model, hub_options, [&sink, &last](const hub::DownloadProgress& p) {
          if (!p.file.empty()) last = {p.file, p.bytes_done, p.bytes_total, p.bytes_per_s, p.file_index, p.n_files};
          sink(last);  // throws Cancelled once the engine is shutting down
        });
      };
    }
    if (worker) e.queue_size = 1;  // a worker claims a job only when idle
    auto engine = std::make_unique<Engine>(
        [model, load](const LoadProgress& progress) { return Pipeline::load(*model, load, progress); }, std::move(e));
    if (worker)
      return std::unique_ptr<JobService>(std::make_unique<cluster::ClusterWorker>(std::move(engine), *worker));
    return std::unique_ptr<JobService>(std::move(engine));
  });
}

CommandRegistrar reg(
    {"serve", "HTTP server: OpenAI-compatible image generation, jobs with live progress, a web page",
     [](CLI::App& sub) {
       auto o = std::make_shared<ServeOptions>();
       sub.add_option("--model", o->paths.model_dir,
                      "diffusers model folder, or a name ORG/NAME[@REVISION][:FILE] looked up in the Hugging Face "
                      "cache");
       sub.add_flag("--allow-download", o->allow_download,
                    "download a named model's missing files from the hub (HF_ENDPOINT, HF_TOKEN) in the background "
                    "(/health reports `downloading` with bytes and rate)");
       sub.add_option("--diffusion-model", o->paths.diffusion_model, "transformer weights (flux1-*.safetensors)");
       sub.add_option("--vae", o->paths.vae, "autoencoder weights (ae.safetensors)");
       sub.add_option("--clip-l", o->paths.clip_l, "CLIP-L text encoder weights");
       sub.add_option("--t5xxl", o->paths.t5xxl, "T5-XXL text encoder weights");
       sub.add_option("--tokenizers", o->paths.tokenizers, "tokenizer folder");
       sub.add_option("--host", o->server.host, "address to bind")->capture_default_str();
       sub.add_option("--port", o->server.port, "port (0 = any free port)")->capture_default_str();
       sub.add_option("--queue-size", o->queue_size, "jobs waiting at most")->capture_default_str();
       sub.add_option("--max-pixels", o->server.limits.max_pixels, "largest width*height")->capture_default_str();
       sub.add_option("--max-steps", o->server.limits.max_steps, "most steps per image")->capture_default_str();
       sub.add_option("--max-image-pixels", o->server.limits.max_image_pixels,
                      "largest width*height of an uploaded img2img picture (checked before decoding)")
           ->capture_default_str();
       sub.add_option("--lora-dir", o->server.limits.lora_dir,
                      "folder of LoRA adapters (*.safetensors) that requests may name in `loras` (GET /v1/loras "
                      "lists them); names never leave the folder");
       sub.add_flag("--lora-lenient", o->lora_lenient,
                    "LoRA keys that name no module of the model: one warning instead of failing the job");
       sub.add_option("--max-n", o->server.limits.max_n, "most images per OpenAI request")->capture_default_str();
       sub.add_option("--max-body", o->server.max_body, "largest request body (bytes)")->capture_default_str();
       sub.add_option("--threads", o->threads, "compute threads (0 = cores)")->capture_default_str();
       sub.add_option("--job-ttl,--result-ttl", o->result_ttl_s,
                      "seconds a finished job (its image, and its entry in GET /v1/jobs) is kept")
           ->capture_default_str();
       sub.add_option("--max-jobs-kept", o->max_jobs_kept, "finished jobs kept at most (the oldest go first)")
           ->capture_default_str();
       sub.add_option("--api-key", o->server.access.api_key,
                      "require \"Authorization: Bearer KEY\" on every API route (/, /health, /ready stay open)")
           ->envname("FLUX_API_KEY");
       sub.add_option("--api-auth", o->server.access.basic,
                      "USER:PASSWORD: also accept HTTP Basic credentials (what A1111 clients send)");
       sub.add_flag("--metrics-auth", o->server.access.metrics_auth, "/metrics needs the credentials too");
       sub.add_option("--cors-origin", o->server.access.cors_origin,
                      "allow browser clients from this origin (e.g. https://example.org, or *): CORS headers on "
                      "every reply, OPTIONS preflight answered 204");
       sub.add_option("--timeout", o->server.timeout_s, "seconds to read a request or write a response")
           ->capture_default_str();
       sub.add_flag("--warmup", o->warmup, "run one small generation before /ready turns 200");
       sub.add_flag("--queue-while-loading", o->queue_while_loading, "accept jobs while the models load (else 503)");
       sub.add_flag("--low-memory", o->low_memory, "reorder weights per call and drop each stage's weights after it");
       sub.add_option(
              "--vae-tile", o->vae_tile,
              "VAE decode in overlapping tiles of at most N px a side, blended (less memory, slightly different "
              "image); 0 = never; -1 = automatic: 512 px tiles when the untiled decode's activations would "
              "exceed 2 GiB (images above about 840x840)")
           ->capture_default_str();
       sub.add_option("--precision", o->precision,
                      "products: auto (bf16 where the CPU's bf16 is faster, else f32), f32 (exact), bf16 (needs "
                      "AVX512_BF16) or int8 (weights per output feature, activations per token)")
           ->capture_default_str();
       sub.add_option("--memory-budget", o->memory_budget,
                      "bytes to stay within, e.g. 8G or 500M (default: MemAvailable, or a memory cgroup's free room "
                      "when smaller, less 10% / 512M)");
       sub.add_flag("--realtime-io,!--no-realtime-io", o->server.realtime_io,
                    "run the I/O thread at real-time priority (SCHED_FIFO 1) when allowed (root, CAP_SYS_NICE or "
                    "RLIMIT_RTPRIO >= 1) and the compute below other processes; default on")
           ->capture_default_str();
       sub.add_option("--role", o->role,
                      "all: this process serves and computes; api: accepts jobs into --queue (no model); worker: "
                      "loads the model and runs jobs from --queue")
           ->capture_default_str();
       sub.add_option("--queue", o->queue,
                      "redis://HOST:PORT[/DB]: the Redis of --role api|worker (password: FLUX_REDIS_PASSWORD)");
       sub.add_option("--max-tries", o->max_tries, "worker: deliveries of a job before it is failed, not rerun")
           ->capture_default_str();
       sub.add_option("--visibility-ms", o->visibility_ms,
                      "worker: a job its worker stopped holding this long is reclaimed by another worker")
           ->capture_default_str();
       sub.add_option("--node-name", o->node_name, "this node's name in Redis (default HOST-PID)");
       return [o] { return serve(*o); };
     }});

}  // namespace
}  // namespace flux::cli
