// libFuzzer: A1111 request bodies (/sdapi/v1/txt2img and /img2img) -> SdapiRequest, and prompts -> LoRA tags. Any
// input either parses into a request within the limits (n = batch_size x n_iter images, at most max_n) or is refused
// with an HttpError 400 carrying a message; nothing else may happen.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/errors.h"
#include "server/sdapi.h"

using namespace flux;
using namespace flux::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  Limits limits;
  limits.max_pixels = 512 * 512;
  limits.max_steps = 50;
  limits.max_n = 4;
  limits.default_width = limits.default_height = 512;
  for (SdapiMode mode : {SdapiMode::txt2img, SdapiMode::img2img}) {
    for (std::optional<Variant> variant :
         {std::optional<Variant>(), std::optional(Variant::schnell), std::optional(Variant::dev)}) {
      try {
        const SdapiRequest r = parse_sdapi_request(body, mode, limits, variant);
        const auto& g = r.image.generate;
        const bool ok = !g.prompt.empty() && g.width % 16 == 0 && g.height % 16 == 0 && g.width >= 64 &&
                        g.height >= 64 && static_cast<int64_t>(g.width) * g.height <= limits.max_pixels &&
                        g.steps >= 0 && g.steps <= limits.max_steps && r.image.n >= 1 && r.image.n <= limits.max_n &&
                        r.image.n == r.batch_size * r.n_iter && g.guidance >= 0 && g.guidance <= 100 &&
                        g.strength >= 0 && g.strength <= 1 && g.loras.empty() && !r.parameters.empty() &&
                        (mode == SdapiMode::txt2img || !r.image.image.empty());
        if (!ok) std::abort();
      } catch (const HttpError& e) {
        if (e.status != 400 || std::string(e.what()).empty()) std::abort();
      }
    }
  }
  std::string prompt(body);
  try {
    const auto tags = extract_lora_tags(prompt);
    if (prompt.size() > size) std::abort();
    for (const auto& t : tags)
      if (t.name.empty()) std::abort();
  } catch (const HttpError& e) {
    if (e.status != 400) std::abort();
  }
  return 0;
}
