// Images: 8-bit RGB, row-major [height, width, 3]. PNG written with libpng (with tEXt chunks for the
// generation parameters); PNG and JPEG read (for img2img). Errors name the file and what is wrong.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flux {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // RGB, width * height * 3
};

// `text` entries become tEXt chunks (key <= 79 Latin-1 chars), e.g. {"parameters": "prompt: ...; seed: 1"}.
void write_png(const std::string& path, const Image& image, const std::map<std::string, std::string>& text = {});
std::vector<uint8_t> encode_png(const Image& image, const std::map<std::string, std::string>& text = {});
// Reads PNG (any bit depth/colour type, converted to 8-bit RGB) or JPEG, by content.
Image read_image(const std::string& path);
// max_pixels caps width * height before any pixel buffer is allocated (an upload's limit); the decoder's own
// cap is 64 Mpx and 16384 per side.
Image decode_image(const uint8_t* data, size_t size, const std::string& name, uint64_t max_pixels = UINT64_MAX);
// The tEXt chunks of a PNG.
std::map<std::string, std::string> read_png_text(const std::string& path);

}  // namespace flux
