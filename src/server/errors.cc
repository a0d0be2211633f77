#include "server/errors.h"

#include <nlohmann/json.hpp>

namespace flux::server {

const char* error_type(int status) {
  if (status == 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  if (status == 404) return "not_found_error";
  return "invalid_request_error";
}

std::string error_json(int status, const std::string& message, const std::string& param, const std::string& code) {
  nlohmann::json error = {{"message", message}, {"type", error_type(status)}};
  error["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
  error["code"] = code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code);
  return nlohmann::json{{"error", error}}.dump();
}

}  // namespace flux::server
