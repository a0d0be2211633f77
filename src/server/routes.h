// The HTTP API (DESIGN.md table): requests -> responses, without sockets. Routes that answer at once return
// a Response; routes that wait on a job (SSE, OpenAI synchronous or streamed generation) return what to wait
// on, and the connection code (streaming.cc) does the waiting. Errors are thrown as HttpError.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/auth.h"
#include "server/http_types.h"
#include "server/metrics.h"
#include "server/request.h"

namespace flux::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = pick a free port (tests)
  Limits limits;
  size_t max_body = 16 << 20;  // bytes of a request body (img2img uploads: a base64 or multipart picture)
  double timeout_s = 30;       // reading a request / writing a response
  double retry_after_s = 5;    // Retry-After for 429 and 503
  bool realtime_io = true;     // the I/O thread real-time when allowed (http_server.cc)
  AccessOptions access;        // API key / Basic auth, open routes, CORS (auth.h)
  int max_queue = 8;           // jobs waiting at most (serve --queue-size; GET /v1/config)
};

struct SdapiState;  // sdapi.h

// Shared by the routes and the connections; used on the I/O thread only (the engine locks itself).
struct ServerContext {
  JobService& engine;  // the local Engine, or the cluster API node (engine/job_service.h)
  ServerOptions options;
  Metrics metrics;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  bool shutting_down = false;
  std::string io_scheduling = "other";  // the I/O thread's policy (/health "io_thread"): "fifo" when real-time
  std::shared_ptr<SdapiState> sdapi;    // the A1111 API's runs (sdapi.h), made on first use
};

struct RouteResult {
  // parse_image: an image route (POST /v1/images/generations, /v1/images/edits, /v1/jobs) whose body the
  // connection parses off the I/O thread (parse_image_route on a worker: JSON or multipart, base64, the image
  // decode), then submits here (submit_image_route).
  // sdapi_generate: POST /sdapi/v1/txt2img or img2img, answered by serve_sdapi_generation (sdapi_wait.h).
  enum class Kind { respond, job_events, generate_wait, generate_stream, parse_image, sdapi_generate };
  Kind kind = Kind::respond;
  Response response;                 // respond
  std::vector<std::string> job_ids;  // job_events: one; generate_*: one per image
  ImageRequest image;                // generate_*
  std::string model;                 // generate_*: the model id that answers (GET /v1/models)
};

// Every route the router answers: method and path template ("{id}" = one path segment). A path matching none is
// a 404; GET /openapi.json describes each (a test checks that they agree).
struct RouteSpec {
  const char* method;
  const char* path;
};
const std::vector<RouteSpec>& route_table();
// True when `path` matches the template (segment by segment; "{id}" matches any non-empty segment).
bool path_matches(const std::string& path_template, const std::string& path);
// The model id GET /v1/models lists: "flux.1-schnell" or "flux.1-dev" once known, "flux.1" while loading.
std::string listed_model_id(const ServerContext& context);
// The adapters requests may name: --lora-dir's, or (a cluster API node without one) what its workers offer.
std::vector<LoraFileInfo> served_loras(const ServerContext& context);

RouteResult route_request(const Request& request, ServerContext& context);
// Kind::parse_image, part 1 (any thread; pure): the request's body -> ImageRequest with its init image decoded.
ImageRequest parse_image_route(const Request& request, const Limits& limits);
// Part 2 (I/O thread): submits the parsed request as its route does; answers like route_request.
RouteResult submit_image_route(const Request& request, ImageRequest image, ServerContext& context);
// Submits one job (I/O thread); the engine's refusals become HttpError 429 / 503 / 400. Returns its id.
std::string submit_job(ServerContext& context, const GenerateRequest& request);

}  // namespace flux::server
