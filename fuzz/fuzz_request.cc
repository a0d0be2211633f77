// libFuzzer: request bodies -> typed ImageRequest (both endpoints). Any input either parses into a request
// that satisfies the limits, or is refused with an HttpError 400 carrying a message; nothing else may happen.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/errors.h"
#include "server/request.h"

using namespace flux::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  Limits limits;
  limits.max_pixels = 512 * 512;
  limits.max_steps = 50;
  limits.max_n = 4;
  limits.default_width = limits.default_height = 512;
  for (Endpoint endpoint : {Endpoint::openai, Endpoint::jobs}) {
    try {
      const ImageRequest r = parse_image_request(body, endpoint, limits);
      const auto& g = r.generate;
      const bool ok = !g.prompt.empty() && g.width % 16 == 0 && g.height % 16 == 0 && g.width >= 64 && g.height >= 64 &&
                      static_cast<int64_t>(g.width) * g.height <= limits.max_pixels && g.steps >= 0 &&
                      g.steps <= limits.max_steps && r.n >= 1 && r.n <= limits.max_n && r.partial_images >= 0 &&
                      r.partial_images <= 3 && g.guidance >= 0 && g.guidance <= 100 &&
                      (endpoint == Endpoint::openai || r.n == 1) && (!r.stream || r.n == 1);
      if (!ok) std::abort();
    } catch (const HttpError& e) {
      if (e.status != 400 || std::string(e.what()).empty()) std::abort();
    }
  }
  try {
    const auto [w, h] = parse_size(std::string(body));
    if (w <= 0 || h <= 0) std::abort();
  } catch (const HttpError& e) {
    if (e.status != 400) std::abort();
  }
  return 0;
}
