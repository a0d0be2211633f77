// POST /sdapi/v1/txt2img and /img2img on a connection (sdapi_wait.cc). Internal to the server's Beast translation
// units, like connection.h.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include "server/connection.h"

namespace flux::server {

// Parses the body on `workers` (JSON, base64, the init image's decode), submits one job per image, records the run
// for /sdapi/v1/progress, waits for every job without blocking the I/O thread (a client that leaves cancels them)
// and answers {images, parameters, info}. Returns the status sent (499: the client left).
asio::awaitable<int> serve_sdapi_generation(Stream& stream, ServerContext& context, const Request& request,
                                            asio::any_io_executor workers);

}  // namespace flux::server
