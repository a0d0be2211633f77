// Internal to the server's two Beast translation units (http_server.cc, streaming.cc): the stream type and
// the coroutines that answer on it. Not included anywhere else (Beast headers are slow to compile).
#pragma once

#include <utility>  // before asio's awaitable.hpp, which uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "server/http_types.h"
#include "server/routes.h"

namespace flux::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Stream = beast::tcp_stream;

// Writes a whole response (Content-Length framed); false when the client is gone or too slow.
asio::awaitable<bool> write_response(Stream& stream, const Response& response, bool keep_alive, double timeout_s);
// Writes raw bytes within the timeout; false on failure.
asio::awaitable<bool> write_raw(Stream& stream, const std::string& data, double timeout_s);

// GET /v1/jobs/{id}/events: the job's events as SSE until its terminal event. Returns the status sent.
asio::awaitable<int> serve_job_events(Stream& stream, ServerContext& context, const RouteResult& route);
// POST /v1/images/generations: waits for the jobs (JSON answer) or streams them (SSE, OpenAI event names).
// A client that disconnects meanwhile cancels its jobs. Returns the status sent (499: the client left).
asio::awaitable<int> serve_generation(Stream& stream, ServerContext& context, const RouteResult& route);

}  // namespace flux::server
