#include "server/routes.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "pipeline/lora_dir.h"
#include "server/errors.h"
#include "server/image_upload.h"
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
  const MemoryStatus memory = c.engine.memory_status();
  if (!memory.plan.empty())
    j["memory"] = {{"budget", memory.budget},         {"plan", memory.plan},
                   {"weights", memory.weights},       {"need", memory.need},
                   {"peak_stage", memory.peak_stage}, {"resident", memory.resident}};
  j["io_thread"] = c.io_scheduling;
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
  std::string id = "flux.1";
  if (load.variant) id = *load.variant == Variant::dev ? "flux.1-dev" : "flux.1-schnell";
  data.push_back({{"id", id},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "black-forest-labs"},
                  {"status", load_state_name(load.state)},
                  {"description", load.model}});
  return json_response(200, {{"object", "list"}, {"data", data}});
}

// GET /v1/loras: the adapters of --lora-dir (each file's header is read once, then remembered by size and mtime).
Response loras(const ServerContext& c) {
  json data = json::array();
  if (!c.options.limits.lora_dir.empty()) {
    for (const LoraFileInfo& f : list_lora_dir(c.options.limits.lora_dir))
      data.push_back({{"name", f.name}, {"object", "lora"}, {"size", f.size}, {"format", f.format}});
  }
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
  RouteResult result;
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
  const std::string id = submit(c, image.generate);
  const auto info = c.engine.info(id);
  Response r = json_response(202, {{"id", id},
                                   {"object", "job"},
                                   {"status", info ? job_status_name(info->status) : "queued"},
                                   {"position", info ? info->position : 0},
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
  throw HttpError(404, str_cat("no route for ", request.path), "", "not_found");
}

}  // namespace

RouteResult route_request(const Request& request, ServerContext& c) {
  const std::string& p = request.path;
  const std::string& m = request.method;
  auto only = [&](const char* method) {
    if (m != method) method_not_allowed(request, method);
  };
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
    return respond({200, "text/plain; version=0.0.4", c.metrics.render(c.engine.stats(), c.engine.load_status()), {}});
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
    only("POST");
    RouteResult r;
    r.kind = Kind::parse_image;  // parse_image_route on a worker, then submit_image_route
    return r;
  }
  if (p.rfind("/v1/jobs/", 0) == 0 && p.size() > 9) return job_route(request, c);
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

}  // namespace flux::server
