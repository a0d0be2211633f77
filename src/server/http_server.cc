// The accept loop and the connection coroutine: read a request (with a timeout and a body limit), route it,
// answer or hand it to streaming.cc, log one line, count it in the metrics.
#include "server/http_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <thread>

#include "base/log.h"
#include "base/thread_pool.h"
#include "server/auth.h"
#include "server/connection.h"
#include "server/errors.h"
#include "server/sdapi_wait.h"

namespace flux::server {
namespace {

namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

Response error_response(int status, const std::string& message, const std::string& param = {},
                        const std::string& code = {}) {
  return {status, "application/json", error_json(status, message, param, code), {}};
}

// The answer to an exception thrown while routing: HttpError as it says, flux::Error 400, anything else 500.
Response error_for(const Request& request, std::exception_ptr failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const HttpError& e) {
    Response r = error_response(e.status, e.what(), e.param, e.code);
    r.headers = e.headers;
    return r;
  } catch (const Error& e) {
    return error_response(400, e.what(), "", "invalid_value");
  } catch (const std::exception& e) {
    log_error("server: ", request.method, " ", request.path, ": internal error: ", e.what());
    return error_response(500, str_cat("internal error: ", e.what()), "", "internal_error");
  }
}

// Runs on the worker pool: parse_image_route, its result or failure handed back through the references (the
// caller co_awaits this, so they outlive it).
asio::awaitable<void> parse_on_worker(const Request& request, Limits limits, std::optional<ImageRequest>& out,
                                      std::exception_ptr& failure) {
  try {
    out = parse_image_route(request, limits);
  } catch (...) {
    failure = std::current_exception();
  }
  co_return;
}

class Server {
 public:
  Server(const ServerOptions& options, const std::function<std::unique_ptr<JobService>()>& make_engine)
      : options_(options), make_engine_(make_engine) {}

  int run() {
    const tcp::endpoint endpoint(asio::ip::make_address(options_.host), static_cast<unsigned short>(options_.port));
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    const unsigned short port = acceptor_.local_endpoint().port();
    std::printf("listening on http://%s:%u\n", options_.host.c_str(), static_cast<unsigned>(port));
    std::fflush(stdout);
    log_info("server: listening on http://", options_.host, ":", port);
    if (!endpoint.address().is_loopback() && !options_.access.enabled())
      log_warn("server: listening on ", options_.host,
               ", beyond this machine, without credentials: anyone who can reach it may generate images; set "
               "--api-key (or FLUX_API_KEY) or --api-auth user:pass");
    cors_ = cors_headers(options_.access);

    engine_ = make_engine_();  // starts loading in the background
    context_ = std::make_unique<ServerContext>(ServerContext{*engine_, options_, {}, Clock::now(), false, {}, nullptr});
    // After the engine started its threads (they lower themselves; threads started later by this one are reset
    // to the normal policy), so only this thread is real-time.
    if (options_.realtime_io) {
      if (raise_current_thread_to_realtime()) {
        log_info(
            "server: the I/O thread runs at real-time priority (SCHED_FIFO 1): it answers ahead of the compute "
            "threads and of other processes");
        if (lower_own_autogroup(kComputeNice))
          log_info("server: this session's scheduling group at nice ", kComputeNice,
                   ": the compute threads yield to other processes too");
      } else {
        log_warn("server: the I/O thread could not get real-time priority (", std::strerror(errno),
                 "; it needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 1, e.g. systemd LimitRTPRIO=1): while jobs run, "
                 "requests may wait for a core behind other processes' time slices (a few ms)");
      }
    }
    context_->io_scheduling = current_thread_scheduling();
    // The upload parser runs below the I/O thread, like the compute threads (its one thread takes this first).
    asio::post(workers_, [] { lower_current_thread_priority(); });
    signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
      if (!ec) begin_shutdown(signal);
    });
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
    ioc_.run();
    workers_.join();
    if (shutdown_thread_.joinable()) shutdown_thread_.join();
    engine_->shutdown();
    log_info("server: stopped");
    return 0;
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!acceptor_.is_open()) co_return;
        log_warn("server: accept failed: ", ec.message());
        continue;
      }
      asio::co_spawn(ioc_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    socket.set_option(tcp::no_delay(true));
    Stream stream(std::move(socket));
    beast::flat_buffer buffer;
    const uint64_t session_id = next_session_++;
    for (;;) {
      if (context_->shutting_down) break;
      http::request_parser<http::string_body> parser;
      parser.body_limit(options_.max_body);
      parser.header_limit(16 * 1024);
      stream.expires_after(to_ms(options_.timeout_s));
      boost::system::error_code ec;
      idle_[session_id] = &stream;
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      idle_.erase(session_id);
      const auto t0 = Clock::now();
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
          ec == asio::error::connection_reset || ec == asio::error::eof || ec == asio::error::bad_descriptor)
        break;
      if (ec) {
        const bool too_big = ec == http::error::body_limit;
        const int status = too_big ? 413 : ec == http::error::header_limit ? 431 : 400;
        const std::string message =
            too_big ? str_cat("request body: larger than the limit of ", options_.max_body, " bytes")
                    : str_cat("malformed HTTP request: ", ec.message());
        Response refusal = error_response(status, message, too_big ? "body" : "", "bad_request");
        refusal.headers = cors_;
        co_await write_response(stream, refusal, false, options_.timeout_s);
        finish(std::string(parser.get().method_string()), std::string(parser.get().target()), status, t0);
        break;
      }
      auto& req = parser.get();
      Request request;
      request.method = std::string(req.method_string());
      const std::string target(req.target());
      const size_t q = target.find('?');
      request.path = target.substr(0, q);
      if (q != std::string::npos) request.query = target.substr(q + 1);
      request.content_type = std::string(req[http::field::content_type]);
      request.authorization = std::string(req[http::field::authorization]);
      request.body = std::move(req.body());
      bool keep_alive = req.keep_alive() && !context_->shutting_down;

      std::optional<RouteResult> route;
      std::optional<Response> error;
      try {
        route = route_request(request, *context_);
      } catch (...) {
        error = error_for(request, std::current_exception());
      }
      if (route && route->kind == RouteResult::Kind::parse_image) {
        // JSON with a base64 picture or a multipart upload: parsed and decoded on the worker (milliseconds for a
        // large image), submitted back here. (No co_await inside try: GCC 12 mishandles it.)
        std::optional<ImageRequest> parsed;
        std::exception_ptr failure;
        co_await asio::co_spawn(workers_, parse_on_worker(request, options_.limits, parsed, failure),
                                asio::use_awaitable);
        try {
          if (failure) std::rethrow_exception(failure);
          route = submit_image_route(request, std::move(*parsed), *context_);
        } catch (...) {
          route.reset();
          error = error_for(request, std::current_exception());
        }
      }
      int status = 0;
      bool ok = true;
      for (auto& r : {error ? &*error : nullptr, route ? &route->response : nullptr})
        if (r) r->headers.insert(r->headers.end(), cors_.begin(), cors_.end());
      if (error) {
        status = error->status;
        ok = co_await write_response(stream, *error, keep_alive, options_.timeout_s);
      } else if (route->kind == RouteResult::Kind::respond) {
        status = route->response.status;
        ok = co_await write_response(stream, route->response, keep_alive, options_.timeout_s);
      } else if (route->kind == RouteResult::Kind::sdapi_generate) {
        status = co_await serve_sdapi_generation(stream, *context_, request, workers_.get_executor());
        keep_alive = false;
      } else if (route->kind == RouteResult::Kind::job_events) {
        status = co_await serve_job_events(stream, *context_, *route);
        keep_alive = false;
      } else {
        status = co_await serve_generation(stream, *context_, *route);
        keep_alive = false;
      }
      finish(request.method, request.path, status, t0);
      if (!ok || !keep_alive) break;
    }
    idle_.erase(session_id);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
  }

  void finish(const std::string& method, const std::string& path, int status, Clock::time_point t0) {
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    context_->metrics.count_request(method, route_template(path), status, seconds);
    log_info(method, " ", path, " ", status, " ", static_cast<int64_t>(seconds * 1e6) / 1e3, " ms");
  }

  // Stop accepting; cancel every job on a helper thread (so this thread keeps delivering the final events);
  // close idle connections; run() returns when the last connection ends.
  void begin_shutdown(int signal) {
    log_info("server: signal ", signal, ": shutting down");
    context_->shutting_down = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    shutdown_work_.emplace(ioc_.get_executor());
    shutdown_thread_ = std::thread([this] {
      engine_->shutdown();
      asio::post(ioc_, [this] {
        for (auto& [id, stream] : idle_) stream->cancel();
        shutdown_work_.reset();
      });
    });
    for (auto& [id, stream] : idle_) stream->cancel();
  }

  ServerOptions options_;
  std::vector<std::pair<std::string, std::string>> cors_;  // added to every reply (--cors-origin)
  std::function<std::unique_ptr<JobService>()> make_engine_;
  asio::io_context ioc_{1};
  // Request parsing too heavy for the I/O thread (image uploads: base64, PNG/JPEG decoding).
  asio::thread_pool workers_{1};
  tcp::acceptor acceptor_{ioc_};
  asio::signal_set signals_{ioc_, SIGINT, SIGTERM};
  std::unique_ptr<JobService> engine_;
  std::unique_ptr<ServerContext> context_;
  std::map<uint64_t, Stream*> idle_;  // connections waiting for their next request
  uint64_t next_session_ = 0;
  std::thread shutdown_thread_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> shutdown_work_;
};

}  // namespace

asio::awaitable<bool> write_response(Stream& stream, const Response& response, bool keep_alive, double timeout_s) {
  http::response<http::string_body> res{static_cast<http::status>(response.status), 11};
  res.set(http::field::server, "fluxcpp");
  res.set(http::field::content_type, response.content_type);
  res.set(http::field::cache_control, "no-store");
  for (const auto& [name, value] : response.headers) res.set(name, value);
  res.body() = response.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  stream.expires_after(to_ms(timeout_s));
  boost::system::error_code ec;
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

asio::awaitable<bool> write_raw(Stream& stream, const std::string& data, double timeout_s) {
  stream.expires_after(to_ms(timeout_s));
  boost::system::error_code ec;
  co_await asio::async_write(stream, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

int run_server(const ServerOptions& options, const std::function<std::unique_ptr<JobService>()>& make_engine) {
  Server server(options, make_engine);
  return server.run();
}

}  // namespace flux::server
