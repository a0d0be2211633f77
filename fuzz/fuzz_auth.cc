// libFuzzer: the Authorization header and the path -> access decision (server/auth.cc). The input is
// "PATH\nHEADER". Whatever the bytes, the check either lets the request through or throws a 401 that names
// `authorization` and asks with WWW-Authenticate; it lets a protected route through only when the header carries
// the key (Bearer) or the user:pass (Basic) exactly, after the scheme word and spaces.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/auth.h"
#include "server/errors.h"
#include "server/sse.h"

using namespace flux::server;

namespace {

// The header with "scheme " (any case) and surrounding spaces taken off; "" when it has another scheme.
std::string after_scheme(std::string_view h, std::string_view scheme) {
  if (h.size() <= scheme.size() || h[scheme.size()] != ' ') return "";
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(h[i])) != std::tolower(static_cast<unsigned char>(scheme[i])))
      return "";
  h.remove_prefix(scheme.size() + 1);
  const size_t b = h.find_first_not_of(' ');
  if (b == std::string_view::npos) return "";
  const size_t e = h.find_last_not_of(' ');
  return std::string(h.substr(b, e - b + 1));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  Request request;
  request.path = std::string(in.substr(0, nl));
  request.authorization = nl == std::string_view::npos ? "" : std::string(in.substr(nl + 1));

  AccessOptions key_only, basic_only, both, metrics;
  key_only.api_key = "sk-test-KEY_123";
  basic_only.basic = "user:pa ss:word";
  both.api_key = key_only.api_key;
  both.basic = basic_only.basic;
  metrics.api_key = key_only.api_key;
  metrics.metrics_auth = true;
  const std::string basic_b64 =
      base64_encode(reinterpret_cast<const uint8_t*>(basic_only.basic.data()), basic_only.basic.size());

  for (const AccessOptions* a : {&key_only, &basic_only, &both, &metrics}) {
    const bool bearer_ok = !a->api_key.empty() && after_scheme(request.authorization, "Bearer") == a->api_key;
    const bool basic_ok = !a->basic.empty() && after_scheme(request.authorization, "Basic") == basic_b64;
    if (is_authorized(request.authorization, *a) != (bearer_ok || basic_ok)) std::abort();
    const bool open = is_open_route(request.path, *a);
    try {
      check_access(request, *a);
      if (!open && !bearer_ok && !basic_ok) std::abort();  // let through without the credentials
    } catch (const HttpError& e) {
      if (open || bearer_ok || basic_ok) std::abort();  // refused with them
      if (e.status != 401 || std::string(e.what()).empty()) std::abort();
      bool asks = false;
      for (const auto& [k, v] : e.headers) asks |= k == "WWW-Authenticate" && !v.empty();
      if (!asks) std::abort();
    }
  }
  AccessOptions none;
  try {
    check_access(request, none);  // no key, no user: everything is open
  } catch (...) {
    std::abort();
  }
  return 0;
}
