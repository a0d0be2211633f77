// POST /sdapi/v1/txt2img and /img2img (sdapi_wait.h): the A1111 answer {images: [base64 PNG], parameters: {the
// request}, info: "<JSON text>"} once every image's job ended. The engine posts each event to this connection's
// executor (the I/O thread), where it updates the run (what /progress shows) and wakes this coroutine.
#include "server/sdapi_wait.h"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "server/auth.h"
#include "server/errors.h"
#include "server/image_upload.h"
#include "server/sdapi.h"
#include "server/sse.h"

namespace flux::server {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// The parse on a worker; the result or failure is handed back through the references (the caller co_awaits this).
asio::awaitable<void> parse_on_worker(const Request& request, SdapiMode mode, Limits limits,
                                      std::optional<Variant> variant, std::optional<SdapiRequest>& out,
                                      std::exception_ptr& failure) {
  try {
    SdapiRequest r = parse_sdapi_request(request.body, mode, limits, variant);
    try {
      decode_request_image(r.image, limits);
    } catch (const HttpError& e) {  // it names the native field `image`; ours is init_images[0]
      std::string message = e.what();
      if (message.rfind("image", 0) == 0) message = "init_images[0]" + message.substr(5);
      throw HttpError(e.status, message, "init_images", e.code);
    }
    out = std::move(r);
  } catch (...) {
    failure = std::current_exception();
  }
  co_return;
}

Response error_response(std::exception_ptr failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const HttpError& e) {
    Response r{e.status, "application/json", error_json(e.status, e.what(), e.param, e.code), {}};
    r.headers = e.headers;
    return r;
  } catch (const Error& e) {
    return {400, "application/json", error_json(400, e.what(), "", "invalid_value"), {}};
  } catch (const std::exception& e) {
    log_error("server: /sdapi/v1: internal error: ", e.what());
    return {500, "application/json", error_json(500, str_cat("internal error: ", e.what()), "", "internal_error"), {}};
  }
}

// Writes the whole answer, with the --cors-origin headers (a browser client on another origin reads it). The
// callers pass a named Response: GCC 12 mishandles temporaries in a co_await expression.
asio::awaitable<void> answer(Stream& stream, const ServerContext& c, Response& response) {
  for (auto& h : cors_headers(c.options.access)) response.headers.push_back(std::move(h));
  co_await write_response(stream, response, false, c.options.timeout_s);
}

std::string timestamp_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  std::strftime(buf.data(), buf.size(), "%Y%m%d%H%M%S", &tm);
  return buf.data();
}

// The connection's side of a run: the timer its events and the client's departure wake, and whether the client left.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  bool disconnected = false;
  bool watching = false;
};

// Keeps a read pending on the socket: end of stream or an error means the client left.
void watch_disconnect(Stream& stream, const std::shared_ptr<Waiter>& waiter) {
  waiter->watching = true;
  auto buffer = std::make_shared<std::array<char, 512>>();
  Stream* s = &stream;
  stream.socket().async_read_some(asio::buffer(*buffer), [s, waiter, buffer](boost::system::error_code ec, size_t) {
    if (!waiter->watching) return;
    if (!ec) return watch_disconnect(*s, waiter);  // bytes from the client (ignored): keep watching
    waiter->disconnected = true;
    waiter->timer.cancel();
  });
}

// What the A1111 `info` text says about the generation (A1111's processing.py js() fields that apply, plus ours:
// guidance, model, warnings).
std::string info_json(const SdapiRequest& r, const std::vector<uint64_t>& seeds, int steps, const std::string& model,
                      std::optional<Variant> variant, const std::string& timestamp,
                      const std::vector<std::string>& warnings) {
  const GenerateRequest& g = r.image.generate;
  const json guidance = variant == Variant::schnell ? json(nullptr) : json(g.guidance);  // schnell has none
  const bool img2img = r.mode == SdapiMode::img2img;
  json loras = json::array();
  for (const LoraSpec& l : g.loras)
    loras.push_back({{"name", std::filesystem::path(l.path).stem().string()}, {"weight", l.strength}});
  // A1111's infotext line; CFG scale 1 = no classifier-free guidance (FLUX.1's guidance is distilled: its own key).
  json infotexts = json::array();
  for (uint64_t seed : seeds) {
    std::string line = str_cat(r.prompt, "\nSteps: ", steps, ", Sampler: Euler, Schedule type: Simple, CFG scale: 1");
    if (!guidance.is_null()) line += str_cat(", Distilled CFG Scale: ", g.guidance);
    line += str_cat(", Seed: ", seed, ", Size: ", g.width, "x", g.height, ", Model: ", model);
    if (img2img) line += str_cat(", Denoising strength: ", g.strength);
    infotexts.push_back(line);
  }
  const json all_seeds(seeds);
  json j = {{"prompt", r.prompt},
            {"all_prompts", json::array()},
            {"negative_prompt", r.negative_prompt},
            {"all_negative_prompts", json::array()},
            {"seed", seeds.empty() ? 0 : seeds.front()},
            {"all_seeds", all_seeds},
            {"subseed", -1},
            {"all_subseeds", json::array()},
            {"subseed_strength", 0},
            {"width", g.width},
            {"height", g.height},
            {"sampler_name", r.sampler_name},
            {"sampler", r.sampler_name},
            {"scheduler", r.scheduler},
            {"cfg_scale", r.cfg_scale ? json(*r.cfg_scale) : json(nullptr)},
            {"distilled_cfg_scale", guidance},
            {"guidance", guidance},
            {"steps", steps},
            {"batch_size", r.batch_size},
            {"n_iter", r.n_iter},
            {"restore_faces", false},
            {"sd_model_name", model},
            {"sd_model_hash", nullptr},
            {"model", model},
            {"denoising_strength", img2img ? json(g.strength) : json(nullptr)},
            {"loras", loras},
            {"styles", json::array()},
            {"job_timestamp", timestamp},
            {"index_of_first_image", 0},
            {"infotexts", infotexts},
            {"warnings", warnings}};
  for (size_t i = 0; i < seeds.size(); ++i) {
    j["all_prompts"].push_back(r.prompt);
    j["all_negative_prompts"].push_back(r.negative_prompt);
    j["all_subseeds"].push_back(-1);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Unsubscribes when the connection stops waiting.
class Subscriptions {
 public:
  explicit Subscriptions(JobService& engine) : engine_(engine) {}
  ~Subscriptions() {
    for (const auto& [id, sub] : subs_) engine_.unsubscribe(id, sub);
  }
  Subscriptions(const Subscriptions&) = delete;
  Subscriptions& operator=(const Subscriptions&) = delete;
  void add(const std::string& id, const asio::any_io_executor& executor, const std::weak_ptr<SdapiRun>& weak) {
    const uint64_t sub = engine_.subscribe(
        id, [executor](std::function<void()> fn) { asio::post(executor, std::move(fn)); },
        [weak](std::shared_ptr<const JobEvent> event) {
          if (auto run = weak.lock()) {
            run->apply(*event);
            if (run->wake) run->wake();
          }
        });
    if (sub) subs_.emplace_back(id, sub);
  }

 private:
  JobService& engine_;
  std::vector<std::pair<std::string, uint64_t>> subs_;
};

void forget(SdapiState& state, const std::shared_ptr<SdapiRun>& run) {
  std::erase(state.runs, run);
  run->wake = nullptr;
}

}  // namespace

asio::awaitable<int> serve_sdapi_generation(Stream& stream, ServerContext& c, const Request& request,
                                            asio::any_io_executor workers) {
  const SdapiMode mode = request.path == "/sdapi/v1/img2img" ? SdapiMode::img2img : SdapiMode::txt2img;
  std::optional<SdapiRequest> parsed;
  std::exception_ptr failure;
  co_await asio::co_spawn(
      workers, parse_on_worker(request, mode, c.options.limits, c.engine.load_status().variant, parsed, failure),
      asio::use_awaitable);

  // Back on the I/O thread: one job per image, seeds consecutive (as A1111 numbers a batch). No co_await inside
  // try (GCC 12 mishandles it).
  auto run = std::make_shared<SdapiRun>();
  run->mode = mode;
  run->job_timestamp = timestamp_now();
  if (!failure) {
    try {
      if (c.shutting_down) throw HttpError(503, "the server is shutting down", "", "shutting_down");
      GenerateRequest g = parsed->image.generate;
      for (int i = 0; i < parsed->image.n; ++i) {
        g.seed = parsed->image.generate.seed + static_cast<uint64_t>(i);
        run->job_ids.push_back(submit_job(c, g));
      }
    } catch (...) {
      for (const auto& id : run->job_ids) c.engine.cancel(id);
      failure = std::current_exception();
    }
  }
  if (failure) {
    Response response = error_response(failure);
    co_await answer(stream, c, response);
    co_return response.status;
  }
  const SdapiRequest& r = *parsed;
  run->ends.resize(run->job_ids.size());

  auto executor = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(executor);
  run->wake = [w = std::weak_ptr<Waiter>(waiter)] {
    if (auto waiter = w.lock()) waiter->timer.cancel();
  };
  sdapi_state(c).runs.push_back(run);
  bool client_gone = false;
  {
    Subscriptions subscriptions(c.engine);
    for (const auto& id : run->job_ids) subscriptions.add(id, executor, run);
    watch_disconnect(stream, waiter);
    while (!run->finished()) {
      if (waiter->disconnected) {
        client_gone = true;
        break;
      }
      waiter->timer.expires_after(1h);
      boost::system::error_code ec;
      co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    waiter->watching = false;
    boost::system::error_code ignored;
    stream.socket().cancel(ignored);
  }
  forget(sdapi_state(c), run);
  if (client_gone) {
    for (const auto& id : run->job_ids) c.engine.cancel(id);
    co_return 499;
  }

  // Every job ended: a failure decides (500), and so does a shutdown (503); images cancelled by /interrupt or /skip
  // are left out, the others are answered in request order.
  std::vector<std::string> warnings = r.warnings;
  json images = json::array();
  std::vector<uint64_t> seeds;
  int steps = r.image.generate.steps;
  if (const auto variant = c.engine.load_status().variant; steps == 0 && variant) steps = default_steps(*variant);
  int cancelled = 0;
  for (size_t i = 0; i < run->job_ids.size(); ++i) {
    const JobEvent& end = *run->ends[i];
    seeds.push_back(r.image.generate.seed + i);
    if (end.kind == JobEventKind::failed) {
      const std::string message = str_cat("generation failed: ", end.error);
      Response response{500, "application/json", error_json(500, message, "", "generation_failed"), {}};
      co_await answer(stream, c, response);
      co_return 500;
    }
    if (end.kind == JobEventKind::cancelled) {
      if (end.reason == kCancelServerStopping || c.shutting_down) {
        Response response{503,
                          "application/json",
                          error_json(503, "generation cancelled: the server is shutting down", "", "cancelled"),
                          {}};
        co_await answer(stream, c, response);
        co_return 503;
      }
      ++cancelled;
      continue;
    }
    if (end.result) {
      images.push_back(base64_encode(end.result->encoded));
      steps = end.result->result.steps;
    }
  }
  if (cancelled > 0)
    warnings.push_back(str_cat(run->interrupted ? "interrupted" : "skipped", ": ", cancelled, " of ",
                               run->job_ids.size(), " images cancelled, not returned"));
  const json body = {{"images", images},
                     {"parameters", json::parse(r.parameters)},
                     {"info", info_json(r, seeds, steps, sdapi_model_name(c), c.engine.load_status().variant,
                                        run->job_timestamp, warnings)}};
  Response response{200, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace), {}};
  co_await answer(stream, c, response);
  co_return 200;
}

}  // namespace flux::server
