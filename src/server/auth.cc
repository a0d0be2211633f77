#include "server/auth.h"

#include "base/error.h"
#include "server/errors.h"
#include "server/sse.h"

namespace flux::server {

bool is_open_route(const std::string& path, const AccessOptions& access) {
  if (path == "/" || path == "/favicon.ico" || path == "/health" || path == "/ready") return true;
  return path == "/metrics" && !access.metrics_auth;
}

bool constant_time_equal(std::string_view given, std::string_view secret) {
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (size_t i = 0; i < secret.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(secret[i]));
  }
  return diff == 0;
}

namespace {

// The credentials after "SCHEME " (scheme compared case-insensitively, as RFC 9110 says); "" when absent.
std::string_view credentials(std::string_view header, std::string_view scheme) {
  if (header.size() <= scheme.size() || header[scheme.size()] != ' ') return {};
  for (size_t i = 0; i < scheme.size(); ++i)
    if ((header[i] | 0x20) != (scheme[i] | 0x20)) return {};
  std::string_view rest = header.substr(scheme.size() + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  return rest;
}

}  // namespace

bool is_authorized(const std::string& authorization, const AccessOptions& access) {
  if (!access.api_key.empty()) {
    const std::string_view bearer = credentials(authorization, "Bearer");
    if (!bearer.empty() && constant_time_equal(bearer, access.api_key)) return true;
  }
  if (!access.basic.empty()) {
    const std::string expected =
        base64_encode(reinterpret_cast<const uint8_t*>(access.basic.data()), access.basic.size());
    const std::string_view basic = credentials(authorization, "Basic");
    if (!basic.empty() && constant_time_equal(basic, expected)) return true;
  }
  return false;
}

void check_access(const Request& request, const AccessOptions& access) {
  if (!access.enabled() || is_open_route(request.path, access)) return;
  if (is_authorized(request.authorization, access)) return;
  const std::string how = !access.api_key.empty() && !access.basic.empty()
                              ? "\"Authorization: Bearer KEY\" or HTTP Basic user:pass"
                          : !access.api_key.empty() ? "\"Authorization: Bearer KEY\" (serve --api-key / FLUX_API_KEY)"
                                                    : "HTTP Basic user:pass (serve --api-auth)";
  HttpError e(401,
              str_cat(request.authorization.empty() ? "missing credentials" : "wrong credentials", ": ", request.path,
                      " needs ", how),
              "authorization", request.authorization.empty() ? "missing_credentials" : "invalid_credentials");
  e.headers.emplace_back("WWW-Authenticate",
                         !access.api_key.empty() ? "Bearer realm=\"fluxcpp\"" : "Basic realm=\"fluxcpp\"");
  throw e;
}

std::vector<std::pair<std::string, std::string>> cors_headers(const AccessOptions& access) {
  if (access.cors_origin.empty()) return {};
  std::vector<std::pair<std::string, std::string>> h = {{"Access-Control-Allow-Origin", access.cors_origin},
                                                        {"Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"},
                                                        {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                                                        {"Access-Control-Expose-Headers", "Location, Retry-After"},
                                                        {"Access-Control-Max-Age", "600"}};
  if (access.cors_origin != "*") h.emplace_back("Vary", "Origin");
  return h;
}

Response preflight_response(const AccessOptions& access) {
  Response r{204, "text/plain", "", cors_headers(access)};
  r.headers.emplace_back("Allow", "GET, POST, DELETE, OPTIONS");
  return r;
}

}  // namespace flux::server
