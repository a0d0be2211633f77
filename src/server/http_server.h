// `fluxcpp serve`: HTTP/1.1 on one I/O thread (Boost.Beast, C++20 coroutines, one coroutine per connection,
// a timeout on every read and write). It binds and prints "listening on http://HOST:PORT" (stdout, flushed)
// before the engine starts loading, so /health answers from the first moment. SIGINT/SIGTERM: stop accepting,
// cancel the jobs (streams get their final event), join every thread, return 0.
#pragma once

#include <functional>
#include <memory>

#include "engine/engine.h"
#include "server/routes.h"

namespace flux::server {

int run_server(const ServerOptions& options, const std::function<std::unique_ptr<JobService>()>& make_engine);

}  // namespace flux::server
