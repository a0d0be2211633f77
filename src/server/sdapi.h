// The AUTOMATIC1111 API subset (/sdapi/v1/*) that clients such as Open WebUI and SillyTavern call (README, "A1111
// API"). Requests map onto our jobs: one engine job per image (batch_size x n_iter, consecutive seeds), the same
// validation, limits and queue as the native and OpenAI endpoints. Fields we do not support are ignored with a
// warning in the reply's `info`; wrong types of supported fields are a 400 naming the field.
//   sdapi_request.cc  the txt2img / img2img body -> SdapiRequest (pure: unit-tested and fuzzed)
//   sdapi_routes.cc   the answers given at once (progress, interrupt, skip, sd-models, options, ...) and the runs
//   sdapi_wait.cc     txt2img / img2img: parse on a worker, submit, wait for the jobs, answer (a coroutine)
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/job.h"
#include "server/request.h"
#include "server/routes.h"

namespace flux::server {

enum class SdapiMode { txt2img, img2img };

// A parsed POST /sdapi/v1/txt2img or /img2img body.
struct SdapiRequest {
  SdapiMode mode = SdapiMode::txt2img;
  // generate: prompt (without its <lora:...> tags), width, height, steps (0 = model default), guidance, seed (of the
  // first image), loras (from the tags), preview (always: /progress shows it); n = batch_size * n_iter; image =
  // init_images[0] (img2img, decoded later by decode_request_image) and generate.strength = denoising_strength.
  ImageRequest image;
  std::string prompt;  // as sent, tags included (echoed in info)
  std::string negative_prompt;
  int batch_size = 1, n_iter = 1;
  std::string sampler_name = "Euler";
  std::string scheduler = "simple";
  std::optional<double> cfg_scale;  // as sent
  std::vector<std::string> warnings;
  std::string parameters;  // the request echoed as JSON (init_images replaced by null unless include_init_images)
};

// Parses and validates a body against the limits. `variant` (when the model is loaded) decides whether cfg_scale is
// guidance (dev) or ignored (schnell). Throws HttpError 400 naming the field (a LoRA tag naming no adapter
// of the folder is a warning, as in A1111).
SdapiRequest parse_sdapi_request(std::string_view body, SdapiMode mode, const Limits& limits,
                                 std::optional<Variant> variant);

// Removes every `<lora:NAME[:WEIGHT[:...]]>` tag from `prompt` and returns them as (name, weight) in order. Throws
// HttpError 400 naming `prompt` for a malformed tag (no name, a weight that is not a number).
struct LoraTag {
  std::string name;
  double weight = 1.0;
  bool extra_weights = false;  // <lora:name:te:unet>: only the first weight is used
};
std::vector<LoraTag> extract_lora_tags(std::string& prompt);

// One A1111 generation while it is queued or runs: its jobs and what /sdapi/v1/progress shows. I/O thread only:
// the engine's events reach it through the waiting connection's executor (sdapi_wait.cc).
struct SdapiRun {
  SdapiMode mode = SdapiMode::txt2img;
  std::vector<std::string> job_ids;                     // one per image, in order
  std::vector<std::shared_ptr<const JobEvent>> ends;    // per job: completed / failed / cancelled, null while active
  int current = -1;                                     // the job that started last
  int step = 0, total = 0;                              // its denoising steps
  std::shared_ptr<const std::vector<uint8_t>> preview;  // its latest step preview (PNG)
  std::optional<std::chrono::steady_clock::time_point> started;  // when its first job started
  std::string job_timestamp;                                     // YYYYmmddHHMMSS when accepted
  bool interrupted = false, skipped = false;
  std::function<void()> wake;  // wakes the waiting connection

  int n_done() const;
  bool finished() const { return n_done() == static_cast<int>(job_ids.size()); }
  bool running() const { return current >= 0 && !ends[current]; }
  bool active() const { return current >= 0 && !finished(); }  // started, some image still to come
  void apply(const JobEvent& event);                           // one engine event of one of its jobs
};

// The A1111 runs of a server (ServerContext::sdapi), oldest first.
struct SdapiState {
  std::vector<std::shared_ptr<SdapiRun>> runs;
};

// GET /sdapi/v1/progress: {progress, eta_relative, state, current_image, textinfo} of the run that is running (else
// the oldest waiting one). current_image (base64 PNG) is left out when skip_current_image.
std::string sdapi_progress_json(const SdapiState& state, bool skip_current_image,
                                std::chrono::steady_clock::time_point now);

// Every /sdapi/v1/* route: the answers given at once, or Kind::sdapi_generate for txt2img / img2img (answered by
// serve_sdapi_generation in sdapi_wait.cc).
RouteResult sdapi_route(const Request& request, ServerContext& context);
SdapiState& sdapi_state(ServerContext& context);  // made on first use
// The name clients see for the loaded model ("flux.1-schnell", "flux.1-dev"; "flux.1" while loading).
std::string sdapi_model_name(const ServerContext& context);
std::string sdapi_model_name(std::optional<Variant> variant);
// Whether a checkpoint name sent by a client (options, override_settings) names the served model `ours`: the same
// name, optionally with A1111's " [hash]" suffix or a ".safetensors" extension (while loading, any "flux.1...").
bool sdapi_names_model(std::string name, const std::string& ours);

}  // namespace flux::server
