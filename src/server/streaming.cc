// Answers that wait on jobs. The engine posts each event to this connection's executor (the I/O thread),
// where it lands in an Inbox and wakes the coroutine; nothing here blocks a thread. While waiting, a read is
// kept pending on the socket: if the client goes away, its generation is cancelled.
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <ctime>
#include <deque>
#include <map>

#include "server/auth.h"
#include "server/connection.h"
#include "server/errors.h"
#include "server/sse.h"

namespace flux::server {
namespace {

using namespace std::chrono_literals;

// Events of the jobs this connection waits for, and whether the client has gone. I/O thread only.
struct Inbox {
  explicit Inbox(const asio::any_io_executor& executor) : timer(executor) {}
  std::deque<std::shared_ptr<const JobEvent>> events;
  asio::steady_timer timer;
  bool disconnected = false;
  bool watching = false;
  void wake() { timer.cancel(); }
};

// Waits until an event arrives, the client leaves, or `max_wait` passes.
asio::awaitable<void> wait(Inbox& inbox, std::chrono::steady_clock::duration max_wait) {
  if (!inbox.events.empty() || inbox.disconnected) co_return;
  inbox.timer.expires_after(max_wait);
  boost::system::error_code ec;
  co_await inbox.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// Unsubscribes when the connection stops waiting.
class Subscription {
 public:
  Subscription(JobService& engine, const std::string& id, const std::shared_ptr<Inbox>& inbox,
               const asio::any_io_executor& executor)
      : engine_(engine), id_(id) {
    std::weak_ptr<Inbox> weak = inbox;
    subscription_ = engine.subscribe(
        id, [executor](std::function<void()> fn) { asio::post(executor, std::move(fn)); },
        [weak](std::shared_ptr<const JobEvent> event) {
          if (auto inbox = weak.lock()) {
            inbox->events.push_back(std::move(event));
            inbox->wake();
          }
        });
  }
  ~Subscription() {
    if (subscription_) engine_.unsubscribe(id_, subscription_);
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  explicit operator bool() const { return subscription_ != 0; }

 private:
  JobService& engine_;
  std::string id_;
  uint64_t subscription_ = 0;
};

// Keeps a read pending on the socket; end of stream or an error marks the client gone.
void watch_disconnect(Stream& stream, const std::shared_ptr<Inbox>& inbox) {
  inbox->watching = true;
  auto buffer = std::make_shared<std::array<char, 512>>();
  Stream* s = &stream;
  stream.socket().async_read_some(asio::buffer(*buffer), [s, inbox, buffer](boost::system::error_code ec, size_t) {
    if (!inbox->watching) return;
    if (ec) {
      inbox->disconnected = true;
      inbox->wake();
    } else {
      watch_disconnect(*s, inbox);  // the client sent bytes (ignored): keep watching
    }
  });
}

void stop_watching(Stream& stream, Inbox& inbox) {
  inbox.watching = false;
  boost::system::error_code ignored;
  stream.socket().cancel(ignored);
}

// The head of an event stream, with the CORS headers (--cors-origin) as on every reply.
std::string sse_head(const ServerContext& c) {
  std::string head =
      "HTTP/1.1 200 OK\r\nServer: fluxcpp\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "X-Accel-Buffering: no\r\nConnection: close\r\n";
  for (const auto& [name, value] : cors_headers(c.options.access)) head += str_cat(name, ": ", value, "\r\n");
  return head + "\r\n";
}

}  // namespace

asio::awaitable<int> serve_job_events(Stream& stream, ServerContext& c, const RouteResult& route) {
  const std::string& id = route.job_ids.front();
  auto executor = co_await asio::this_coro::executor;
  auto inbox = std::make_shared<Inbox>(executor);
  Subscription subscription(c.engine, id, inbox, executor);
  if (!subscription) {
    co_await write_response(
        stream,
        {404, "application/json", error_json(404, str_cat("job \"", id, "\" not found"), "id", "job_not_found"),
         cors_headers(c.options.access)},
        false, c.options.timeout_s);
    co_return 404;
  }
  if (!co_await write_raw(stream, sse_head(c), c.options.timeout_s)) co_return 200;
  watch_disconnect(stream, inbox);
  for (;;) {
    co_await wait(*inbox, 15s);
    if (inbox->disconnected) break;
    if (inbox->events.empty()) {  // a comment keeps proxies and browsers from giving up on a long step
      if (!co_await write_raw(stream, ": keep-alive\n\n", c.options.timeout_s)) break;
      continue;
    }
    const auto event = inbox->events.front();
    inbox->events.pop_front();
    if (!co_await write_raw(stream, sse_event(job_event_name(event->kind), job_event_json(*event)),
                            c.options.timeout_s))
      break;
    if (event->kind == JobEventKind::completed || event->kind == JobEventKind::failed ||
        event->kind == JobEventKind::cancelled)
      break;
  }
  stop_watching(stream, *inbox);
  co_return 200;
}

asio::awaitable<int> serve_generation(Stream& stream, ServerContext& c, const RouteResult& route) {
  auto executor = co_await asio::this_coro::executor;
  auto inbox = std::make_shared<Inbox>(executor);
  std::vector<std::unique_ptr<Subscription>> subscriptions;
  for (const auto& id : route.job_ids)
    subscriptions.push_back(std::make_unique<Subscription>(c.engine, id, inbox, executor));
  const int width = route.image.generate.width, height = route.image.generate.height;
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const bool stream_events = route.kind == RouteResult::Kind::generate_stream;
  if (stream_events && !co_await write_raw(stream, sse_head(c), c.options.timeout_s)) {
    for (const auto& id : route.job_ids) c.engine.cancel(id);
    co_return 499;
  }
  watch_disconnect(stream, inbox);

  std::map<std::string, std::shared_ptr<const JobEvent>> done;  // job id -> terminal event
  int partial_sent = 0;
  bool client_gone = false;
  while (done.size() < route.job_ids.size()) {
    co_await wait(*inbox, 1h);
    if (inbox->disconnected) {
      client_gone = true;
      break;
    }
    while (!inbox->events.empty()) {
      const auto event = inbox->events.front();
      inbox->events.pop_front();
      switch (event->kind) {
        case JobEventKind::completed:
        case JobEventKind::failed:
        case JobEventKind::cancelled:
          done[event->job_id] = event;
          break;
        case JobEventKind::step: {
          const int wanted = route.image.partial_images;
          if (!stream_events || !event->preview_encoded || partial_sent >= wanted || event->total <= 0) break;
          if (event->step * (wanted + 1) < (partial_sent + 1) * event->total) break;
          const std::string data =
              openai_partial_image_json(created, *event->preview_encoded, partial_sent, width, height);
          ++partial_sent;
          if (!co_await write_raw(stream, sse_event("image_generation.partial_image", data), c.options.timeout_s))
            client_gone = true;
          break;
        }
        default:
          break;
      }
      if (client_gone) break;
    }
    if (client_gone) break;
  }
  stop_watching(stream, *inbox);
  if (client_gone) {
    for (const auto& id : route.job_ids) c.engine.cancel(id);
    co_return 499;
  }

  // Every job ended: the first failure or cancellation decides, else the images in request order.
  std::string problem;
  int status = 200;
  OpenAiReply reply;
  reply.created = created;
  reply.model = route.model;
  reply.width = width;
  reply.height = height;
  for (const auto& id : route.job_ids) {
    const auto& event = done[id];
    if (event->kind == JobEventKind::failed && problem.empty()) {
      problem = str_cat("generation failed: ", event->error);
      status = 500;
    } else if (event->kind == JobEventKind::cancelled && problem.empty()) {
      problem = event->reason == kCancelServerStopping ? "generation cancelled: the server is shutting down"
                                                       : "generation cancelled";
      status = 503;
    } else if (event->result) {
      reply.results.push_back(event->result);
    }
  }
  if (stream_events) {
    const std::string last = problem.empty() ? sse_event("image_generation.completed", openai_completed_json(reply))
                                             : sse_event("error", openai_stream_error_json(problem));
    co_await write_raw(stream, last, c.options.timeout_s);
    co_return 200;
  }
  Response response{status, "application/json", "", cors_headers(c.options.access)};
  response.body = problem.empty() ? openai_images_json(reply)
                                  : error_json(status, problem, "", status == 500 ? "generation_failed" : "cancelled");
  co_await write_response(stream, response, false, c.options.timeout_s);
  co_return status;
}

}  // namespace flux::server
