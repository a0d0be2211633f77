// img2img uploads: the `image` of a JSON request (base64, or a data: URL) or of a multipart/form-data body
// (OpenAI's /v1/images/edits shape), decoded with the upload pixel cap (Limits::max_image_pixels, checked from
// the header before any pixel buffer is allocated). Every refusal is an HttpError 400 naming the field and the
// problem (bad base64, not an image, too many pixels, strength without an image). These functions are pure and
// may take many milliseconds on a large picture: the server runs them on a worker, never on the I/O thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "server/request.h"

namespace flux::server {

// Standard base64 (RFC 4648 alphabet; URL-safe '-' '_' accepted too), '=' padding optional, ASCII whitespace
// ignored. Throws HttpError 400 naming `param` and the offending character's position.
std::vector<uint8_t> base64_decode(std::string_view text, const std::string& param);

// Decodes r.image (if any) into r.generate.init_image and frees it; refuses `strength` without an image.
void decode_request_image(ImageRequest& r, const Limits& limits);

// POST /v1/images/edits: a multipart/form-data body (fields image (file), prompt, size, n, response_format,
// strength, seed, steps, guidance, ...; text fields are converted to the JSON request's types) or a JSON body
// like /v1/images/generations'. The image is required; `mask` is refused (no inpainting). The image is not
// decoded yet (decode_request_image).
ImageRequest parse_edit_request(std::string_view body, std::string_view content_type, const Limits& limits);

}  // namespace flux::server
