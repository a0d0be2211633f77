// HTTP errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}. Request parsing and the
// routes throw HttpError; the connection turns it (and any flux::Error) into a response in one place.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace flux::server {

struct HttpError : Error {
  HttpError(int status, std::string message, std::string param = {}, std::string code = {})
      : Error(message), status(status), param(std::move(param)), code(std::move(code)) {}
  int status;         // 400, 404, 405, 409, 413, 429, 503, ...
  std::string param;  // the request field at fault, if any
  std::string code;   // a short machine-readable reason ("queue_full", "model_loading", ...)
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Retry-After, Allow
};

// "invalid_request_error" for 4xx, "server_error" for 5xx (as OpenAI does).
const char* error_type(int status);
// {"error": {"message": ..., "type": ..., "param": ... | null, "code": ... | null}}
std::string error_json(int status, const std::string& message, const std::string& param = {},
                       const std::string& code = {});

}  // namespace flux::server
