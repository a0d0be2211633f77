// Images: PNG round trips (pixels and text), every PNG colour type / depth to RGB8, JPEG decode (files written
// here with libjpeg), and truncated / corrupt data giving an Error (never a crash).
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <functional>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "base/error.h"
#include "io/image.h"
#include "test_util.h"

namespace flux {
namespace {

using test::error_of;

Image gradient(int w, int h) {
  Image im;
  im.width = w;
  im.height = h;
  im.pixels.resize(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &im.pixels[static_cast<size_t>((y * w + x) * 3)];
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, w - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, h - 1));
      p[2] = static_cast<uint8_t>((x + y) * 3);
    }
  return im;
}

TEST(Image, PngRoundTripFileAndText) {
  const std::string path = test::temp_dir("img") + "/a.png";
  const Image im = gradient(37, 19);
  const std::map<std::string, std::string> text = {
      {"parameters", "prompt: a cat; seed: 1"}, {"Software", "fluxcpp"}, {"utf8", "caf\xc3\xa9 \xe2\x9c\x93"}};
  write_png(path, im, text);
  const Image back = read_image(path);
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 19);
  EXPECT_EQ(back.pixels, im.pixels);
  EXPECT_EQ(read_png_text(path), text);
}

TEST(Image, PngEncodeInMemory) {
  const Image im = gradient(5, 3);
  const std::vector<uint8_t> bytes = encode_png(im);
  ASSERT_GT(bytes.size(), 8u);
  EXPECT_EQ(bytes[1], 'P');
  const Image back = decode_image(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(back.pixels, im.pixels);
}

TEST(Image, EncodeRejectsBadInput) {
  Image im = gradient(4, 4);
  im.pixels.pop_back();
  EXPECT_NE(error_of([&] { encode_png(im); }).find("expected 48 RGB bytes"), std::string::npos);
  const std::string msg = error_of([&] { write_png("/nonexistent-dir/x.png", gradient(2, 2)); });
  EXPECT_NE(msg.find("/nonexistent-dir/x.png"), std::string::npos) << msg;
  EXPECT_THROW(encode_png(gradient(2, 2), {{"", "x"}}), Error);
  EXPECT_THROW(encode_png(gradient(2, 2), {{std::string(80, 'k'), "x"}}), Error);
  EXPECT_THROW(encode_png(Image{}), Error);
}

// Writes a PNG of any colour type / depth with libpng directly (test-only; libpng aborts on error here).
std::vector<uint8_t> raw_png(int w, int h, int color_type, int depth, const std::vector<std::vector<uint8_t>>& rows,
                             const std::vector<png_color>& palette = {}, const std::vector<uint8_t>& trns = {},
                             bool interlace = false) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep d, png_size_t n) {
        auto* v = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(p));
        v->insert(v->end(), d, d + n);
      },
      nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), depth, color_type,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  if (!trns.empty()) png_set_tRNS(png, info, trns.data(), static_cast<int>(trns.size()), nullptr);
  png_write_info(png, info);
  if (interlace) png_set_interlace_handling(png);
  std::vector<png_bytep> ptrs;
  for (const auto& r : rows) ptrs.push_back(const_cast<png_bytep>(r.data()));
  png_write_image(png, ptrs.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

Image decode(const std::vector<uint8_t>& bytes) { return decode_image(bytes.data(), bytes.size(), "test.png"); }

TEST(Image, PngColourTypesToRgb8) {
  // Grey 8-bit: replicated.
  Image g = decode(raw_png(2, 1, PNG_COLOR_TYPE_GRAY, 8, {{10, 200}}));
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{10, 10, 10, 200, 200, 200}));
  // Grey 1-bit: expanded to 0 / 255.
  Image g1 = decode(raw_png(3, 1, PNG_COLOR_TYPE_GRAY, 1, {{0xA0}}));  // bits 1 0 1
  EXPECT_EQ(g1.pixels, (std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255}));
  // Grey + alpha: alpha dropped.
  Image ga = decode(raw_png(1, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {{77, 3}}));
  EXPECT_EQ(ga.pixels, (std::vector<uint8_t>{77, 77, 77}));
  // RGBA: alpha dropped.
  Image rgba = decode(raw_png(2, 1, PNG_COLOR_TYPE_RGBA, 8, {{1, 2, 3, 0, 4, 5, 6, 255}}));
  EXPECT_EQ(rgba.pixels, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  // RGB 16-bit: scaled to 8 bits (big-endian samples 0xFFFF -> 255, 0x8080 -> 128, 0x0000 -> 0).
  Image rgb16 = decode(raw_png(1, 1, PNG_COLOR_TYPE_RGB, 16, {{0xFF, 0xFF, 0x80, 0x80, 0, 0}}));
  EXPECT_EQ(rgb16.pixels, (std::vector<uint8_t>{255, 128, 0}));
  // Palette 4-bit with transparency.
  const std::vector<png_color> pal = {{10, 20, 30}, {40, 50, 60}};
  Image p = decode(raw_png(2, 1, PNG_COLOR_TYPE_PALETTE, 4, {{0x10}}, pal, {0, 255}));
  EXPECT_EQ(p.pixels, (std::vector<uint8_t>{40, 50, 60, 10, 20, 30}));
  // Interlaced RGB.
  const Image im = gradient(9, 7);
  std::vector<std::vector<uint8_t>> rows;
  for (int y = 0; y < 7; ++y) rows.emplace_back(im.pixels.begin() + y * 27, im.pixels.begin() + (y + 1) * 27);
  EXPECT_EQ(decode(raw_png(9, 7, PNG_COLOR_TYPE_RGB, 8, rows, {}, {}, true)).pixels, im.pixels);
}

TEST(Image, PngTruncatedAndCorrupt) {
  const std::vector<uint8_t> good = encode_png(gradient(16, 16), {{"k", "v"}});
  for (size_t n : {size_t{8}, size_t{20}, size_t{40}, good.size() / 2, good.size() - 13}) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    const std::string msg = error_of([&] { decode(cut); });
    EXPECT_NE(msg.find("test.png: invalid PNG"), std::string::npos) << n << ": " << msg;
  }
  for (size_t i = 8; i < good.size(); i += 7) {  // any flipped byte: an error or some image, never a crash
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0x5A;
    try {
      const Image im = decode(bad);
      EXPECT_EQ(im.pixels.size(), static_cast<size_t>(im.width * im.height * 3));
    } catch (const Error&) {
    }
  }
  std::vector<uint8_t> bad_ihdr = good;
  bad_ihdr[20] ^= 0xFF;  // width byte: IHDR CRC no longer matches
  EXPECT_NE(error_of([&] { decode(bad_ihdr); }).find("invalid PNG"), std::string::npos);
}

TEST(Image, PngTooLarge) {
  // A valid 1x1 PNG whose IHDR then claims 20000 x 20000 (CRC fixed up): refused before any allocation.
  std::vector<uint8_t> png = encode_png(gradient(1, 1));
  for (int i : {16, 20}) {  // IHDR width, height (big-endian) after the 8-byte signature and chunk length/type
    png[static_cast<size_t>(i + 2)] = 0x4e;
    png[static_cast<size_t>(i + 3)] = 0x20;
  }
  const uLong crc = crc32(0, png.data() + 12, 17);  // over type + 13 data bytes
  for (int k = 0; k < 4; ++k) png[static_cast<size_t>(29 + k)] = static_cast<uint8_t>(crc >> (24 - 8 * k));
  const std::string msg = error_of([&] { decode(png); });
  EXPECT_NE(msg.find("test.png: invalid PNG"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exceeds"), std::string::npos) << msg;
}

std::vector<uint8_t> write_jpeg(const Image& im, int quality, bool grey) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(im.width);
  c.image_height = static_cast<JDIMENSION>(im.height);
  c.input_components = grey ? 1 : 3;
  c.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(static_cast<size_t>(im.width * 3));
  while (c.next_scanline < c.image_height) {
    const uint8_t* src = &im.pixels[c.next_scanline * static_cast<size_t>(im.width) * 3];
    if (grey)
      for (int x = 0; x < im.width; ++x) row[static_cast<size_t>(x)] = src[x * 3];
    else
      std::copy(src, src + im.width * 3, row.begin());
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  return out;
}

double mean_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(int{a[i]} - int{b[i]});
  return s / static_cast<double>(a.size());
}

TEST(Image, JpegDecode) {
  const Image im = gradient(40, 24);
  const std::vector<uint8_t> bytes = write_jpeg(im, 95, false);
  const Image back = decode_image(bytes.data(), bytes.size(), "a.jpg");
  ASSERT_EQ(back.width, 40);
  ASSERT_EQ(back.height, 24);
  EXPECT_LT(mean_abs_diff(back.pixels, im.pixels), 3.0);

  // Greyscale JPEG: the red channel (grey source) replicated to RGB.
  const Image grey = decode_image(write_jpeg(im, 95, true).data(), write_jpeg(im, 95, true).size(), "g.jpg");
  ASSERT_EQ(grey.pixels.size(), im.pixels.size());
  for (size_t i = 0; i < grey.pixels.size(); i += 3) {
    EXPECT_EQ(grey.pixels[i], grey.pixels[i + 1]);
    EXPECT_EQ(grey.pixels[i], grey.pixels[i + 2]);
  }

  const std::string path = test::temp_dir("img") + "/f.jpg";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<long>(bytes.size()));
  EXPECT_EQ(read_image(path).pixels, back.pixels);
}

TEST(Image, JpegTruncatedAndCorrupt) {
  const std::vector<uint8_t> good = write_jpeg(gradient(64, 64), 90, false);
  for (size_t n : {size_t{3}, size_t{10}, size_t{200}, good.size() / 2, good.size() - 2}) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    const std::string msg = error_of([&] { decode_image(cut.data(), cut.size(), "t.jpg"); });
    EXPECT_NE(msg.find("t.jpg: invalid JPEG"), std::string::npos) << n << ": " << msg;
  }
  for (size_t i = 3; i < good.size(); i += 11) {
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0xA5;
    try {
      const Image im = decode_image(bad.data(), bad.size(), "c.jpg");
      EXPECT_EQ(im.pixels.size(), static_cast<size_t>(im.width * im.height * 3));
    } catch (const Error&) {
    }
  }
}

TEST(Image, UnknownFormat) {
  const std::string msg = error_of([] {
    const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
    decode_image(gif, sizeof gif, "x.gif");
  });
  EXPECT_NE(msg.find("x.gif: not a PNG or JPEG"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { decode_image(nullptr, 0, "empty"); }).find("empty"), std::string::npos);
  EXPECT_NE(error_of([] { read_image("/nonexistent/y.png"); }).find("/nonexistent/y.png"), std::string::npos);
  const std::string path = test::temp_dir("img") + "/j.jpg";
  std::ofstream(path) << "\xFF\xD8\xFF";
  EXPECT_NE(error_of([&] { read_png_text(path); }).find("not a PNG"), std::string::npos);
}

}  // namespace
}  // namespace flux

namespace flux {
namespace {

TEST(Image, CallerPixelCapRefusesLargerImages) {
  Image im;
  im.width = 40;
  im.height = 24;
  im.pixels.assign(40 * 24 * 3, 7);
  const std::vector<uint8_t> png = encode_png(im);
  EXPECT_EQ(decode_image(png.data(), png.size(), "a.png", 40 * 24).width, 40);  // exactly at the cap
  try {
    decode_image(png.data(), png.size(), "a.png", 40 * 24 - 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a.png: invalid PNG: image 40x24: expected at most 959 pixels"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace flux

namespace flux {
namespace {

TEST(Image, ChunkClaimingMoreThanTheFileIsRefusedBeforeAllocating) {
  // Found by fuzz_image: a 7x5 PNG whose tEXt chunk header claims 0x2d000012 bytes (755 MB); libpng would
  // allocate that much before noticing the file is 75 bytes long.
  Image im;
  im.width = 7;
  im.height = 5;
  im.pixels.assign(7 * 5 * 3, 3);
  std::vector<uint8_t> png = encode_png(im, {{"parameters", "seed: 1"}});
  const size_t text = 8 + 25;  // signature, IHDR (4 + 4 + 13 + 4): the tEXt chunk's length field
  ASSERT_EQ(std::string(reinterpret_cast<const char*>(&png[text + 4]), 4), "tEXt");
  png[text] = 0x2d;
  try {
    decode_image(png.data(), png.size(), "big.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("big.png: invalid PNG: chunk 'tEXt' at byte 33 claims 754974738 bytes"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace flux
