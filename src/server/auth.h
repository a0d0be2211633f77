// Who may call the API (issue 14, "Exposure beyond loopback"): an API key sent as `Authorization: Bearer KEY`
// (what the OpenAI SDKs send) and/or a user:pass sent as HTTP Basic (what A1111 clients send), compared in
// constant time; the routes that stay open without them; CORS for browser clients on another origin.
// Pure functions of the request's headers: the routes call them first (routes.cc).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http_types.h"

namespace flux::server {

struct AccessOptions {
  std::string api_key;        // serve --api-key KEY or env FLUX_API_KEY; "" = no key
  std::string basic;          // serve --api-auth user:pass; "" = no Basic auth
  bool metrics_auth = false;  // serve --metrics-auth: /metrics needs the key too
  std::string cors_origin;    // serve --cors-origin ORIGIN; "" = no CORS headers
  bool enabled() const { return !api_key.empty() || !basic.empty(); }
};

// Routes open without credentials: "/", "/favicon.ico", "/health", "/ready", and "/metrics" unless metrics_auth.
bool is_open_route(const std::string& path, const AccessOptions& access);
// True when the Authorization header's value carries the key (Bearer) or the user:pass (Basic).
bool is_authorized(const std::string& authorization, const AccessOptions& access);
// Throws HttpError 401 (with WWW-Authenticate) when the request needs credentials it does not carry.
void check_access(const Request& request, const AccessOptions& access);
// Equal strings, in a time that depends only on `secret`'s length (not on where they differ).
bool constant_time_equal(std::string_view given, std::string_view secret);

// Access-Control-* headers for every reply when cors_origin is set (else none).
std::vector<std::pair<std::string, std::string>> cors_headers(const AccessOptions& access);
// OPTIONS (a CORS preflight): 204 with the CORS headers and Allow.
Response preflight_response(const AccessOptions& access);

}  // namespace flux::server
