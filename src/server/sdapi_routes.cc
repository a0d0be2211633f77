// The /sdapi/v1/* answers given at once, and the bookkeeping of A1111 runs that /progress, /interrupt and /skip
// read (sdapi.h). Shapes follow AUTOMATIC1111's modules/api/models.py (ProgressResponse, SDModelItem, SamplerItem,
// SchedulerItem) so its clients read them unchanged.
#include <ctime>
#include <nlohmann/json.hpp>

#include "pipeline/lora_dir.h"
#include "server/errors.h"
#include "server/sdapi.h"
#include "server/sse.h"

namespace flux::server {
namespace {

using nlohmann::json;
using Kind = RouteResult::Kind;

RouteResult respond(const json& body, int status = 200) {
  RouteResult r;
  r.response = {status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace), {}};
  return r;
}

[[noreturn]] void method_not_allowed(const Request& request, const std::string& allow) {
  HttpError e(405, str_cat("method ", request.method, " not allowed on ", request.path, "; allowed: ", allow), "",
              "method_not_allowed");
  e.headers.emplace_back("Allow", allow);
  throw e;
}

// The run under way (one of its jobs started, some still to come), else the oldest waiting one; null when none.
SdapiRun* current_run(const SdapiState& state) {
  for (const auto& run : state.runs)
    if (run->active()) return run.get();
  return state.runs.empty() ? nullptr : state.runs.front().get();
}

json sd_models(const ServerContext& c) {
  const std::string name = sdapi_model_name(c);
  const LoadStatus load = c.engine.load_status();
  // No hash: hashing tens of GB of weights for a listing is not worth it (A1111 also leaves it null until asked).
  return json::array({{{"title", name},
                       {"model_name", name},
                       {"hash", nullptr},
                       {"sha256", nullptr},
                       {"filename", name},
                       {"config", nullptr},
                       {"description", load.model}}});
}

json options(const ServerContext& c) {
  return {{"sd_model_checkpoint", sdapi_model_name(c)},
          {"sd_checkpoint_hash", nullptr},
          {"sd_vae", "Automatic"},
          {"samples_format", "png"},
          {"live_previews_enable", true},
          {"show_progress_every_n_steps", 1},
          {"CLIP_stop_at_last_layers", 1}};
}

// POST /sdapi/v1/options: sd_model_checkpoint must name our model (A1111 refuses unknown checkpoints too); every
// other key is ignored (Open WebUI posts back the whole object it read).
json set_options(const Request& request, const ServerContext& c) {
  const json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    throw HttpError(400, "request body: expected a JSON object of options", "", "invalid_json");
  json ignored = json::array();
  for (const auto& [key, value] : body.items()) {
    if (key != "sd_model_checkpoint") {
      ignored.push_back(key);
      continue;
    }
    if (value.is_null()) continue;
    if (!value.is_string())
      throw HttpError(400, str_cat("sd_model_checkpoint: expected a string, got ", value.type_name()),
                      "sd_model_checkpoint", "invalid_value");
    const std::string ours = sdapi_model_name(c);
    if (!sdapi_names_model(value.get<std::string>(), ours))
      throw HttpError(400,
                      str_cat("sd_model_checkpoint: this server serves \"", ours, "\" only, got \"",
                              value.get<std::string>(), "\" (GET /sdapi/v1/sd-models lists it)"),
                      "sd_model_checkpoint", "model_not_found");
  }
  return {{"ignored", ignored}};
}

json loras(const ServerContext& c) {
  json out = json::array();
  for (const LoraFileInfo& f : served_loras(c))
    out.push_back({{"name", f.name},
                   {"alias", f.name},
                   {"path", f.name + ".safetensors"},  // below the LoRA folder (its location stays private)
                   {"metadata", {{"format", f.format}, {"size", f.size}}}});
  return out;
}

// POST /sdapi/v1/interrupt: every remaining image of the running A1111 request is cancelled; that request answers
// with the images finished before. /skip: only the running image is cancelled; the batch goes on without it.
json interrupt(ServerContext& c, bool skip) {
  json cancelled = json::array();
  for (const auto& run : sdapi_state(c).runs) {
    if (!run->active() || (skip && !run->running())) continue;
    (skip ? run->skipped : run->interrupted) = true;
    for (size_t i = skip ? run->current : 0; i < run->job_ids.size(); ++i) {
      if (run->ends[i]) continue;
      if (c.engine.cancel(run->job_ids[i])) cancelled.push_back(run->job_ids[i]);
      if (skip) break;
    }
  }
  return {{"cancelled", cancelled}};
}

}  // namespace

int SdapiRun::n_done() const {
  int n = 0;
  for (const auto& e : ends) n += e != nullptr;
  return n;
}

void SdapiRun::apply(const JobEvent& event) {
  size_t index = 0;
  while (index < job_ids.size() && job_ids[index] != event.job_id) ++index;
  if (index == job_ids.size()) return;
  switch (event.kind) {
    case JobEventKind::started:
      if (!started) started = std::chrono::steady_clock::now();
      current = static_cast<int>(index);
      step = total = 0;
      preview.reset();
      break;
    case JobEventKind::stage:
      if (static_cast<int>(index) == current && event.stage == Stage::denoise) total = event.total;
      break;
    case JobEventKind::step:
      if (static_cast<int>(index) != current || event.stage != Stage::denoise) break;
      step = event.step;
      total = event.total;
      if (event.preview_encoded) preview = event.preview_encoded;
      break;
    case JobEventKind::completed:
    case JobEventKind::failed:
    case JobEventKind::cancelled:
      if (!ends[index]) ends[index] = std::make_shared<const JobEvent>(event);
      break;
    default:
      break;
  }
}

std::string sdapi_progress_json(const SdapiState& state, bool skip_current_image,
                                std::chrono::steady_clock::time_point now) {
  const SdapiRun* run = current_run(state);
  json s = {{"skipped", false}, {"interrupted", false}, {"stopping_generation", false},
            {"job", ""},        {"job_count", 0},       {"job_timestamp", "0"},
            {"job_no", 0},      {"sampling_step", 0},   {"sampling_steps", 0}};
  json j = {{"progress", 0.0},          {"eta_relative", 0.0}, {"state", s},
            {"current_image", nullptr}, {"textinfo", nullptr}, {"current_task", nullptr}};
  if (!run) return j.dump();
  const int count = static_cast<int>(run->job_ids.size());
  const int done = run->n_done();
  const bool running = run->running();
  s["skipped"] = run->skipped;
  s["interrupted"] = run->interrupted;
  s["job"] = run->mode == SdapiMode::img2img ? "img2img" : "txt2img";
  s["job_count"] = count;
  s["job_timestamp"] = run->job_timestamp;
  s["job_no"] = done;
  s["sampling_step"] = running ? run->step : 0;
  s["sampling_steps"] = running ? run->total : 0;
  // Progress over the whole batch: finished images plus the running one's share of its denoising steps.
  double progress = done;
  if (running && run->total > 0) progress += static_cast<double>(run->step) / run->total;
  progress = std::min(1.0, progress / count);
  double eta = 0;
  if (run->started && progress > 0) {
    const double elapsed = std::chrono::duration<double>(now - *run->started).count();
    eta = elapsed / progress - elapsed;
  }
  j["progress"] = progress;
  j["eta_relative"] = eta;
  j["state"] = s;
  j["textinfo"] = running ? str_cat("image ", run->current + 1, "/", count, ": step ", run->step, "/", run->total)
                          : std::string("waiting in the queue");
  if (running && run->preview && !skip_current_image) j["current_image"] = base64_encode(*run->preview);
  return j.dump();
}

SdapiState& sdapi_state(ServerContext& c) {
  if (!c.sdapi) c.sdapi = std::make_shared<SdapiState>();
  return *c.sdapi;
}

std::string sdapi_model_name(const ServerContext& c) { return sdapi_model_name(c.engine.load_status().variant); }

RouteResult sdapi_route(const Request& request, ServerContext& c) {
  const std::string name = request.path.substr(std::string("/sdapi/v1/").size());
  const std::string& m = request.method;
  auto only = [&](const char* method) {
    if (m != method) method_not_allowed(request, method);
  };
  if (name == "txt2img" || name == "img2img") {
    only("POST");
    RouteResult r;
    r.kind = Kind::sdapi_generate;
    return r;
  }
  if (name == "progress") {
    only("GET");
    const bool skip_image = request.query.find("skip_current_image=true") != std::string::npos;
    RouteResult r;
    r.response = {
        200, "application/json", sdapi_progress_json(sdapi_state(c), skip_image, std::chrono::steady_clock::now()), {}};
    return r;
  }
  if (name == "interrupt" || name == "skip") {
    only("POST");
    return respond(interrupt(c, name == "skip"));
  }
  if (name == "options") {
    if (m == "GET") return respond(options(c));
    if (m == "POST") return respond(set_options(request, c));
    method_not_allowed(request, "GET, POST");
  }
  if (name == "sd-models") {
    only("GET");
    return respond(sd_models(c));
  }
  if (name == "samplers") {
    only("GET");
    return respond(json::array({{{"name", "Euler"}, {"aliases", {"k_euler"}}, {"options", json::object()}}}));
  }
  if (name == "schedulers") {
    only("GET");
    return respond(json::array({{{"name", "simple"},
                                 {"label", "Simple"},
                                 {"aliases", nullptr},
                                 {"default_rho", -1},
                                 {"need_inner_model", false}}}));
  }
  if (name == "loras") {
    only("GET");
    return respond(loras(c));
  }
  if (name == "sd-vae" || name == "upscalers" || name == "latent-upscale-modes" || name == "prompt-styles") {
    only("GET");
    return respond(json::array());  // nothing to choose: FLUX.1 brings its own VAE; no upscalers or styles
  }
  if (name == "refresh-checkpoints" || name == "refresh-loras") {
    only("POST");
    return respond(nullptr);  // both lists are read afresh on every request
  }
  throw HttpError(404,
                  str_cat("no route for ", request.path,
                          " (the A1111 API here: txt2img, img2img, progress, interrupt, skip, options, sd-models, "
                          "samplers, schedulers, loras, sd-vae, upscalers)"),
                  "", "not_found");
}

}  // namespace flux::server
