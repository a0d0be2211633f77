// libFuzzer: multipart/form-data bodies (server/multipart.h) and the /v1/images/edits request built from them
// (server/image_upload.h: fields -> ImageRequest, the upload decoded with the pixel cap). The input's first line,
// when it names multipart/form-data, is the Content-Type; otherwise the boundary is "XyZ". Any input either
// parses into parts that lie inside the body and an ImageRequest that satisfies the limits, or is refused with
// an HttpError 400 carrying a message; nothing else may happen.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/errors.h"
#include "server/image_upload.h"
#include "server/multipart.h"

using namespace flux::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string content_type = "multipart/form-data; boundary=XyZ";
  const size_t nl = input.find('\n');
  if (nl != std::string_view::npos && nl < 200 && input.substr(0, 10) == "multipart/") {
    content_type = std::string(input.substr(0, nl));
    input.remove_prefix(nl + 1);
  }
  const char* begin = input.data();
  const char* end = input.data() + input.size();
  try {
    for (const MultipartPart& p : parse_multipart(input, content_type)) {
      if (p.name.empty() || p.name.size() > kMaxNameBytes) std::abort();
      if (!p.data.empty() && (p.data.data() < begin || p.data.data() + p.data.size() > end)) std::abort();
    }
  } catch (const HttpError& e) {
    if (e.status != 400 || std::string(e.what()).empty()) std::abort();
  }
  Limits limits;
  limits.max_pixels = 512 * 512;
  limits.default_width = limits.default_height = 512;
  limits.max_image_pixels = 256 * 256;
  try {
    ImageRequest r = parse_edit_request(input, content_type, limits);
    if (r.image.empty()) std::abort();  // the image is required
    decode_request_image(r, limits);
    const auto& g = r.generate;
    if (!g.init_image || g.init_image->width <= 0 || g.init_image->height <= 0 ||
        static_cast<int64_t>(g.init_image->width) * g.init_image->height > limits.max_image_pixels ||
        !(g.strength >= 0 && g.strength <= 1) || r.n < 1 || r.n > limits.max_n)
      std::abort();
  } catch (const HttpError& e) {
    if (e.status != 400 || std::string(e.what()).empty()) std::abort();
  }
  return 0;
}
