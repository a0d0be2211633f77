// img2img uploads: base64 / data: URLs, multipart edits, decoding with the pixel cap (see image_upload.h).
#include "server/image_upload.h"

#include <array>
#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "server/errors.h"
#include "server/multipart.h"

namespace flux::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw HttpError(400, message, param, code);
}

std::array<int8_t, 256> base64_table() {
  std::array<int8_t, 256> t{};
  t.fill(-1);
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(alphabet[i])] = static_cast<int8_t>(i);
  t['-'] = 62;  // URL-safe alphabet
  t['_'] = 63;
  return t;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// "data:image/png;base64,AAAA" -> "AAAA"; anything else is returned unchanged.
std::string_view strip_data_url(std::string_view s, const std::string& param) {
  if (s.substr(0, 5) != "data:") return s;
  const size_t comma = s.find(',');
  if (comma == std::string_view::npos || comma > 256)
    bad(param, str_cat(param, ": a data: URL needs \"data:<type>;base64,\" before the data"));
  const std::string_view head = s.substr(5, comma - 5);
  if (head.size() < 7 || head.substr(head.size() - 7) != ";base64")
    bad(param, str_cat(param, ": expected a base64 data: URL (\"data:image/png;base64,...\"), got \"data:",
                       std::string(head), ",...\""));
  const std::string_view type = head.substr(0, head.find(';'));
  if (!type.empty() && type.substr(0, 6) != "image/")
    bad(param, str_cat(param, ": expected an image/* data: URL, got \"", std::string(type), "\""));
  return s.substr(comma + 1);
}

int64_t field_int(const std::string& name, std::string_view text) {
  int64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size())
    bad(name, str_cat(name, ": expected an integer, got \"", std::string(text.substr(0, 40)), "\""));
  return v;
}

double field_number(const std::string& name, std::string_view text) {
  double v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size())
    bad(name, str_cat(name, ": expected a number, got \"", std::string(text.substr(0, 40)), "\""));
  return v;
}

bool field_bool(const std::string& name, std::string_view text) {
  if (text == "true") return true;
  if (text == "false") return false;
  bad(name, str_cat(name, ": expected true or false, got \"", std::string(text.substr(0, 40)), "\""));
}

json field_json(const std::string& name, std::string_view text) {
  try {
    return json::parse(text);
  } catch (const json::exception&) {
    bad(name, str_cat(name, ": expected JSON text (an array of {\"name\", \"strength\"}), got \"",
                      std::string(text.substr(0, 40)), "\""));
  }
}

}  // namespace

std::vector<uint8_t> base64_decode(std::string_view text, const std::string& param) {
  static const std::array<int8_t, 256> table = base64_table();
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_space(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int8_t v = table[static_cast<uint8_t>(c)];
    if (v < 0 || padding > 0) {
      const std::string shown = (c >= 32 && c < 127) ? std::string(1, c) : str_cat("byte ", int(uint8_t(c)));
      bad(param, str_cat(param, ": invalid base64 at character ", i, " ('", shown, "')"), "invalid_base64");
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  // Leftover bits: 0 (complete), 2 (one byte short) or 4 (two bytes short); 6 means a dangling character.
  if (bits == 6 || padding > 2)
    bad(param, str_cat(param, ": invalid base64: truncated (", text.size(), " characters)"), "invalid_base64");
  return out;
}

void decode_request_image(ImageRequest& r, const Limits& limits) {
  if (r.image.empty()) {
    if (r.has_strength) bad("strength", "strength: only with an image (img2img); give \"image\" too");
    return;
  }
  std::vector<uint8_t> bytes;
  std::string_view data;
  if (r.image_base64) {
    bytes = base64_decode(strip_data_url(r.image, "image"), "image");
    data = std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  } else {
    data = r.image;
  }
  try {
    r.generate.init_image =
        std::make_shared<const Image>(decode_image(reinterpret_cast<const uint8_t*>(data.data()), data.size(), "image",
                                                   static_cast<uint64_t>(limits.max_image_pixels)));
  } catch (const Error& e) {
    bad("image", e.what(), "invalid_image");  // "image: not a PNG or JPEG image ...", "... expected at most N pixels"
  }
  std::string().swap(r.image);
}

ImageRequest parse_edit_request(std::string_view body, std::string_view content_type, const Limits& limits) {
  if (!is_multipart_form(content_type)) {
    ImageRequest r = parse_image_request(body, Endpoint::openai, limits);
    if (r.image.empty()) bad("image", "image: required (the picture to edit, base64 or a multipart upload)");
    return r;
  }
  const std::vector<MultipartPart> parts = parse_multipart(body, content_type);
  json fields = json::object();
  const MultipartPart* image = nullptr;
  for (const MultipartPart& p : parts) {
    const std::string& name = p.name;
    if (name == "image" || name == "image[]") {
      if (image != nullptr) bad("image", "image: expected one image, got several");
      image = &p;
      continue;
    }
    if (name == "mask") bad("mask", "mask: inpainting masks are not supported");
    if (fields.contains(name)) bad(name, str_cat(name, ": given more than once"));
    if (p.has_filename) bad(name, str_cat(name, ": expected a text field, got a file upload"));
    if (name == "n" || name == "seed" || name == "steps" || name == "partial_images")
      fields[name] = field_int(name, p.data);
    else if (name == "guidance" || name == "strength")
      fields[name] = field_number(name, p.data);
    else if (name == "stream")
      fields[name] = field_bool(name, p.data);
    else if (name == "loras")  // the JSON array the JSON bodies take, as the field's text
      fields[name] = field_json(name, p.data);
    else
      fields[name] = std::string(p.data);
  }
  if (image == nullptr) bad("image", "image: required (a file part named \"image\")");
  if (image->data.empty()) bad("image", "image: the uploaded file is empty");
  // Text fields that are not valid UTF-8 make dump() throw: refuse them by name.
  std::string text;
  try {
    text = fields.dump();
  } catch (const json::exception&) {
    bad("body", "multipart body: a text field is not valid UTF-8");
  }
  ImageRequest r = parse_image_request(text, Endpoint::openai, limits);
  r.image = std::string(image->data);
  r.image_base64 = false;
  return r;
}

}  // namespace flux::server
