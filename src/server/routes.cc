#include "server/routes.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "pipeline/lora_dir.h"
#include "server/errors.h"
#include "server/image_upload.h"
#include "server/openapi.h"
#include "server/sdapi.h"
#include "server/sse.h"
#include "server/web_page.h"

namespace flux::server {
namespace {

using nlohmann::json;
using Kind = RouteResult::Kind;

Response json_response(int status, const json& body) { return {status, "application/json", body.dump(), {}}; }

RouteResult respond(Response r) {
  RouteResult result;
  result.response = std::move(r);
  return result;
}

[[noreturn]] void method_not_allowed(const Request& request, const std::string& allow) {
  HttpError e(405, str_cat("method ", request.method, " not allowed on ", request.path, "; allowed: ", allow), "",
              "method_not_allowed");
  e.headers.emplace_back("Allow", allow);
  throw e;
}

std::string retry_after(const ServerContext& c) {
  return std::to_string(static_cast<int>(std::ceil(c.options.retry_after_s)));
}

Response health(const ServerContext& c) {
  const LoadStatus load = c.engine.load_status();
  const EngineStats stats = c.engine.stats();
  json j = {{"status", load_state_name(load.state)},
            {"load_progress", load.progress()},
            {"component", load.component},
            {"bytes_done", load.bytes_done},
            {"bytes_total", load.bytes_total},
            {"queue_depth", stats.queue_depth},
            {"running", stats.running},
            {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - c.started).count()}};
  if (load.state == LoadState::ready) j["model"] = load.model;
  if (load.state == LoadState::error) j["error"] = load.error;
  if (load.download)  // a model fetched by name (serve --allow-download): the latest file's transfer
    j["download"] = {{"file", load.download->file},
                     {"bytes_done", load.download->bytes_done},
                     {"bytes_total", load.download->bytes_total},
                     {"bytes_per_s", load.download->bytes_per_s},
                     {"file_index", load.download->file_index},
                     {"n_files", load.download->n_files}};
  const MemoryStatus memory = c.engine.memory_status();
  if (!memory.plan.empty())
    j["memory"] = {{"budget", memory.budget},         {"plan", memory.plan},
                   {"weights", memory.weights},       {"need", memory.need},
                   {"peak_stage", memory.peak_stage}, {"resident", memory.resident}};
  j["io_thread"] = c.io_scheduling;
  if (const std::string node = c.engine.node_status_json(); !node.empty()) j["node"] = json::parse(node);
  if (c.shutting_down) j["shutting_down"] = true;
  return json_response(200, j);
}

Response ready(const ServerContext& c) {
  const LoadStatus load = c.engine.load_status();
  const bool ok = load.state == LoadState::ready && !c.shutting_down;
  Response r = json_response(ok ? 200 : 503, {{"ready", ok}, {"status", load_state_name(load.state)}});
  if (!ok) r.headers.emplace_back("Retry-After", retry_after(c));
  return r;
}

Response models(const ServerContext& c) {
  const LoadStatus load = c.engine.load_status();
  json data = json::array();
  data.push_back({{"id", listed_model_id(c)},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "black-forest-labs"},
                  {"status", load_state_name(load.state)},
                  {"description", load.model}});
  return json_response(200, {{"object", "list"}, {"data", data}});
}

// GET /v1/config: what a client needs to build its form within this server's limits (README, "GET /v1/config").
// The fields that depend on the model are null while it loads.
Response config(const ServerContext& c) {
  const LoadStatus load = c.engine.load_status();
  const Limits& l = c.options.limits;
  json j = {{"model", nullptr},
            {"variant", nullptr},
            {"max_pixels", l.max_pixels},
            {"max_steps", l.max_steps},
            {"default_steps", nullptr},
            {"default_width", l.default_width},
            {"default_height", l.default_height},
            {"size_multiple", 16},
            {"min_side", 64},
            {"max_seed", kMaxSeed},
            {"guidance", false},
            {"default_guidance", nullptr},
            {"img2img", true},
            {"max_image_pixels", l.max_image_pixels},
            {"loras", !l.lora_dir.empty() || l.lora_names_only},
            {"max_loras", l.lora_dir.empty() && !l.lora_names_only ? 0 : l.max_loras},
            {"max_queue", c.options.max_queue},
            {"max_n", l.max_n},
            {"auth", c.options.access.enabled()}};
  if (load.variant) {
    const bool dev = *load.variant == Variant::dev;
    j["model"] = listed_model_id(c);
    j["variant"] = variant_name(*load.variant);
    j["default_steps"] = default_steps(*load.variant);
    j["guidance"] = dev;
    if (dev) j["default_guidance"] = GenerateRequest{}.guidance;
  }
  return json_response(200, j);
}

// The model a request names: the listed id, "flux", or an OpenAI client's default (documented aliases, README).
void check_model(const std::string& model, const ServerContext& c) {
  if (model.empty()) return;
  const std::string id = listed_model_id(c);
  static const char* const aliases[] = {"flux", "flux.1", "dall-e-2", "dall-e-3", "gpt-image-1"};
  if (model == id || std::find(std::begin(aliases), std::end(aliases), model) != std::end(aliases)) return;
  throw HttpError(400,
                  str_cat("model: \"", model, "\" is not served here; expected \"", id,
                          "\" (GET /v1/models) or one of the aliases \"flux\", \"dall-e-2\", \"dall-e-3\", "
                          "\"gpt-image-1\""),
                  "model", "model_not_found");
}

}  // namespace

std::vector<LoraFileInfo> served_loras(const ServerContext& c) {
  if (!c.options.limits.lora_dir.empty()) return list_lora_dir(c.options.limits.lora_dir);
  return c.engine.offered_loras().value_or(std::vector<LoraFileInfo>{});
}

namespace {

// GET /v1/loras: the adapters of --lora-dir (each file's header is read once, then remembered by size and mtime),
// or on a cluster API node without one, what its workers offer.
Response loras(const ServerContext& c) {
  json data = json::array();
  for (const LoraFileInfo& f : served_loras(c))
    data.push_back({{"name", f.name}, {"object", "lora"}, {"size", f.size}, {"format", f.format}});
  return json_response(200, {{"object", "list"}, {"data", data}});
}

// Submits one job; maps the engine's refusals to 429 / 503 / 400 (a size over the memory budget included).
std::string submit(ServerContext& c, const GenerateRequest& request) {
  if (c.shutting_down) {
    HttpError e(503, "the server is shutting down", "", "shutting_down");
    throw e;
  }
  try {
    return c.engine.submit(request);
  } catch (const QueueFull& e) {
    HttpError error(429, str_cat(e.what(), " (", c.engine.stats().queue_depth, " jobs waiting); retry later"), "",
                    "queue_full");
    error.headers.emplace_back("Retry-After", retry_after(c));
    throw error;
  } catch (const NotReady& e) {
    HttpError error(503, e.what(), "", "model_not_ready");
    error.headers.emplace_back("Retry-After", retry_after(c));
    throw error;
  } catch (const HttpError&) {
    throw;
  } catch (const OverBudget& e) {
    throw HttpError(400, e.what(), "size", "memory_budget_exceeded");
  } catch (const Error& e) {
    throw HttpError(400, e.what(), "", "invalid_value");  // Pipeline::validate names the field
  }
}

RouteResult generations(ImageRequest image, ServerContext& c) {
  check_model(image.model, c);
  RouteResult result;
  result.model = listed_model_id(c);
  result.image = std::move(image);
  for (int i = 0; i < result.image.n; ++i) {
    GenerateRequest g = result.image.generate;
    g.seed += static_cast<uint64_t>(i);
    try {
      result.job_ids.push_back(submit(c, g));
    } catch (...) {
      for (const auto& id : result.job_ids) c.engine.cancel(id);
      throw;
    }
  }
  result.kind = result.image.stream ? Kind::generate_stream : Kind::generate_wait;
  return result;
}

Response create_job(const ImageRequest& image, ServerContext& c) {
  check_model(image.model, c);
  const std::string id = submit(c, image.generate);
  const auto info = c.engine.info(id);
  Response r = json_response(202, {{"id", id},
                                   {"object", "job"},
                                   {"status", info ? job_status_name(info->status) : "queued"},
                                   {"position", info && info->position > 0 ? json(info->position) : json(nullptr)},
                                   {"steps", info ? info->steps : image.generate.steps},
                                   {"seed", image.generate.seed},
                                   {"events_url", str_cat("/v1/jobs/", id, "/events")}});
  r.headers.emplace_back("Location", str_cat("/v1/jobs/", id));
  return r;
}

JobInfo find_job(const ServerContext& c, const std::string& id) {
  auto info = c.engine.info(id);
  if (!info)
    throw HttpError(404, str_cat("job \"", id, "\" not found (unknown, or its result expired)"), "id", "job_not_found");
  return *info;
}

RouteResult job_route(const Request& request, ServerContext& c) {
  const std::string rest = request.path.substr(std::string("/v1/jobs/").size());
  const size_t slash = rest.find('/');
  const std::string id = rest.substr(0, slash);
  const std::string tail = slash == std::string::npos ? "" : rest.substr(slash);
  if (tail.empty()) {
    if (request.method == "GET") return respond({200, "application/json", job_info_json(find_job(c, id)), {}});
    if (request.method == "DELETE") {
      find_job(c, id);
      const bool cancelled = c.engine.cancel(id);
      const JobInfo info = find_job(c, id);
      if (!cancelled && info.status != JobStatus::cancelled)
        throw HttpError(409, str_cat("job \"", id, "\" already ", job_status_name(info.status)), "id", "job_finished");
      return respond(json_response(
          200, {{"id", id}, {"object", "job"}, {"cancel_requested", true}, {"status", job_status_name(info.status)}}));
    }
    method_not_allowed(request, "GET, DELETE");
  }
  if (tail == "/events") {
    if (request.method != "GET") method_not_allowed(request, "GET");
    find_job(c, id);
    RouteResult r;
    r.kind = Kind::job_events;
    r.job_ids.push_back(id);
    return r;
  }
  if (tail == "/image") {
    if (request.method != "GET") method_not_allowed(request, "GET");
    const JobInfo info = find_job(c, id);
    auto result = c.engine.result(id);
    if (!result)
      throw HttpError(409, str_cat("job \"", id, "\" has no image: it is ", job_status_name(info.status)), "id",
                      "job_not_completed");
    Response r{200, "image/png", std::string(result->encoded.begin(), result->encoded.end()), {}};
    return respond(std::move(r));
  }
  if (tail == "/thumbnail") {  // made with the image, on the compute thread (EngineOptions::thumbnail_encoder)
    if (request.method != "GET") method_not_allowed(request, "GET");
    const JobInfo info = find_job(c, id);
    auto result = c.engine.result(id);
    if (!result || result->thumbnail.empty())
      throw HttpError(409, str_cat("job \"", id, "\" has no thumbnail: it is ", job_status_name(info.status)), "id",
                      "job_not_completed");
    return respond({200, "image/png", std::string(result->thumbnail.begin(), result->thumbnail.end()), {}});
  }
  throw HttpError(404, str_cat("no route for ", request.path), "", "not_found");
}

}  // namespace

const std::vector<RouteSpec>& route_table() {
  static const std::vector<RouteSpec> routes = {
      {"GET", "/"},
      {"GET", "/favicon.ico"},
      {"GET", "/openapi.json"},
      {"GET", "/health"},
      {"GET", "/ready"},
      {"GET", "/metrics"},
      {"GET", "/v1/config"},
      {"GET", "/v1/models"},
      {"GET", "/v1/loras"},
      {"POST", "/v1/images/generations"},
      {"POST", "/v1/images/edits"},
      {"GET", "/v1/jobs"},
      {"POST", "/v1/jobs"},
      {"GET", "/v1/jobs/{id}"},
      {"DELETE", "/v1/jobs/{id}"},
      {"GET", "/v1/jobs/{id}/events"},
      {"GET", "/v1/jobs/{id}/image"},
      {"GET", "/v1/jobs/{id}/thumbnail"},
      {"POST", "/sdapi/v1/txt2img"},
      {"POST", "/sdapi/v1/img2img"},
      {"GET", "/sdapi/v1/progress"},
      {"POST", "/sdapi/v1/interrupt"},
      {"POST", "/sdapi/v1/skip"},
      {"GET", "/sdapi/v1/sd-models"},
      {"GET", "/sdapi/v1/options"},
      {"POST", "/sdapi/v1/options"},
      {"GET", "/sdapi/v1/samplers"},
      {"GET", "/sdapi/v1/schedulers"},
      {"GET", "/sdapi/v1/loras"},
      {"GET", "/sdapi/v1/sd-vae"},
      {"GET", "/sdapi/v1/upscalers"},
      {"GET", "/sdapi/v1/latent-upscale-modes"},
      {"GET", "/sdapi/v1/prompt-styles"},
      {"POST", "/sdapi/v1/refresh-checkpoints"},
      {"POST", "/sdapi/v1/refresh-loras"},
  };
  return routes;
}

bool path_matches(const std::string& path_template, const std::string& path) {
  size_t t = 0, p = 0;
  while (t < path_template.size() && p < path.size()) {
    if (path_template.compare(t, 4, "{id}") == 0) {
      const size_t end = path.find('/', p);
      const size_t segment_end = end == std::string::npos ? path.size() : end;
      if (segment_end == p) return false;  // an empty segment
      p = segment_end;
      t += 4;
    } else {
      if (path_template[t] != path[p]) return false;
      ++t;
      ++p;
    }
  }
  return t == path_template.size() && p == path.size();
}

std::string listed_model_id(const ServerContext& c) {
  const LoadStatus load = c.engine.load_status();
  if (!load.variant) return "flux.1";
  return *load.variant == Variant::dev ? "flux.1-dev" : "flux.1-schnell";
}

RouteResult route_request(const Request& request, ServerContext& c) {
  const std::string& p = request.path;
  const std::string& m = request.method;
  auto only = [&](const char* method) {
    if (m != method) method_not_allowed(request, method);
  };
  if (m == "OPTIONS") return respond(preflight_response(c.options.access));  // CORS preflight: no credentials
  check_access(request, c.options.access);
  const auto& table = route_table();
  const bool known =
      std::any_of(table.begin(), table.end(), [&](const RouteSpec& r) { return path_matches(r.path, p); });
  if (!known && p.rfind("/sdapi/v1/", 0) != 0) throw HttpError(404, str_cat("no route for ", p), "", "not_found");
  if (p == "/favicon.ico") {
    only("GET");
    return respond({200, "image/svg+xml", web_favicon_svg(), {}});
  }
  if (p == "/openapi.json") {
    only("GET");
    return respond({200, "application/json", openapi_json(), {}});
  }
  if (p == "/v1/config") {
    only("GET");
    return respond(config(c));
  }
  if (p == "/v1/jobs" && m == "GET") return respond({200, "application/json", job_list_json(c.engine.list()), {}});
  if (p == "/health") {
    only("GET");
    return respond(health(c));
  }
  if (p == "/ready") {
    only("GET");
    return respond(ready(c));
  }
  if (p == "/") {
    only("GET");
    return respond({200, "text/html; charset=utf-8", web_page_html(), {}});
  }
  if (p == "/metrics") {
    only("GET");
    const std::string text = c.metrics.render(c.engine.stats(), c.engine.load_status()) + c.engine.node_metrics();
    return respond({200, "text/plain; version=0.0.4", text, {}});
  }
  if (p == "/v1/loras") {
    only("GET");
    return respond(loras(c));
  }
  if (p == "/v1/models") {
    only("GET");
    return respond(models(c));
  }
  if (p == "/v1/images/generations" || p == "/v1/images/edits" || p == "/v1/jobs") {
    if (m != "POST") method_not_allowed(request, p == "/v1/jobs" ? "GET, POST" : "POST");
    RouteResult r;
    r.kind = Kind::parse_image;  // parse_image_route on a worker, then submit_image_route
    return r;
  }
  if (p.rfind("/v1/jobs/", 0) == 0 && p.size() > 9) return job_route(request, c);
  if (p.rfind("/sdapi/v1/", 0) == 0) return sdapi_route(request, c);
  throw HttpError(404, str_cat("no route for ", p), "", "not_found");
}

ImageRequest parse_image_route(const Request& request, const Limits& limits) {
  ImageRequest image =
      request.path == "/v1/images/edits"
          ? parse_edit_request(request.body, request.content_type, limits)
          : parse_image_request(request.body, request.path == "/v1/jobs" ? Endpoint::jobs : Endpoint::openai, limits);
  decode_request_image(image, limits);
  return image;
}

RouteResult submit_image_route(const Request& request, ImageRequest image, ServerContext& c) {
  if (request.path == "/v1/jobs") return respond(create_job(image, c));
  return generations(std::move(image), c);
}

std::string submit_job(ServerContext& c, const GenerateRequest& request) { return submit(c, request); }

}  // namespace flux::server
