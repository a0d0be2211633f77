// PNG (libpng) and JPEG (libjpeg) to and from 8-bit RGB.
//
// Both libraries report errors by longjmp. Jumping over C++ frames with destructors is undefined, so every
// libpng/libjpeg call runs inside a small C-style function (`*_c`) that owns nothing with a destructor:
// its state lives in a struct owned by the caller, the error callback copies the message there and
// longjmps back to that function's setjmp, which returns false; the C++ caller then throws flux::Error.
#include "io/image.h"

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// clang-format off
// After <cstddef>/<cstdio>: jpeglib.h uses size_t and FILE without including their headers.
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
// clang-format on

#include "base/error.h"
#include "base/mapped_file.h"

namespace flux {
namespace {

constexpr uint32_t kMaxSide = 16384;                // per side
constexpr uint64_t kMaxPixels = uint64_t{1} << 26;  // 64 Mpixels (192 MB of RGB)

void copy_message(char* dst, size_t cap, const char* msg) {
  std::snprintf(dst, cap, "%s", msg != nullptr ? msg : "unknown error");
}

// ---- PNG ------------------------------------------------------------------------------------------------

struct PngState {
  uint64_t max_pixels = kMaxPixels;
  png_structp png = nullptr;
  png_infop info = nullptr;
  png_infop end_info = nullptr;
  bool writing = false;
  char error[512] = {};
  char warning[256] = {};  // the last warning: libpng often says why just before a generic error
  // Reading: the input bytes; writing: the output (grown with realloc).
  const uint8_t* in = nullptr;
  size_t in_size = 0;
  size_t in_pos = 0;
  uint8_t* out = nullptr;
  size_t out_size = 0;
  size_t out_cap = 0;
  // Decoded RGB pixels and row pointers (malloc'd).
  uint8_t* pixels = nullptr;
  png_bytep* rows = nullptr;
  uint32_t width = 0;
  uint32_t height = 0;

  ~PngState() {
    if (writing)
      png_destroy_write_struct(&png, &info);
    else if (png != nullptr)
      png_destroy_read_struct(&png, &info, &end_info);
    std::free(out);
    std::free(pixels);
    std::free(rows);
  }
};

extern "C" void fx_png_on_error(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngState*>(png_get_error_ptr(png));
  copy_message(s->error, sizeof s->error, msg);
  png_longjmp(png, 1);
}

extern "C" void fx_png_on_warning(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngState*>(png_get_error_ptr(png));
  copy_message(s->warning, sizeof s->warning, msg);
}

// libpng's own allocations (chunk buffers, rows, text) are capped: a chunk header can claim any length, and
// libpng allocates before it reads (fuzzing found 75-byte files asking for 0.7 and 1.9 GB). 64 MiB is far
// above any legitimate need (a 16384-wide 16-bit RGBA row is 128 KiB); the pixel buffer is ours, not libpng's.
constexpr png_alloc_size_t kPngAllocCap = png_alloc_size_t{64} << 20;

extern "C" png_voidp fx_png_malloc(png_structp png, png_alloc_size_t n) {
  return n <= kPngAllocCap ? std::malloc(n) : nullptr;  // NULL makes libpng raise "out of memory"
}

extern "C" void fx_png_free(png_structp png, png_voidp p) { std::free(p); }

extern "C" void fx_png_read_bytes(png_structp png, png_bytep dst, png_size_t n) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  if (n > s->in_size - s->in_pos) png_error(png, "truncated PNG data (unexpected end of file)");
  std::memcpy(dst, s->in + s->in_pos, n);
  s->in_pos += n;
}

extern "C" void fx_png_write_bytes(png_structp png, png_bytep src, png_size_t n) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  if (s->out_size + n > s->out_cap) {
    size_t cap = s->out_cap ? s->out_cap * 2 : 65536;
    while (cap < s->out_size + n) cap *= 2;
    auto* grown = static_cast<uint8_t*>(std::realloc(s->out, cap));
    if (grown == nullptr) png_error(png, "out of memory");
    s->out = grown;
    s->out_cap = cap;
  }
  std::memcpy(s->out + s->out_size, src, n);
  s->out_size += n;
}

extern "C" void fx_png_flush_bytes(png_structp) {}

// Encodes `rgb` (height rows of width*3 bytes); `text` has n entries.
bool fx_png_encode_c(PngState* s, const uint8_t* rgb, uint32_t width, uint32_t height, png_textp text, int n_text) {
  s->writing = true;
  s->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, s, fx_png_on_error, fx_png_on_warning);
  if (s->png == nullptr) return copy_message(s->error, sizeof s->error, "cannot create a PNG writer"), false;
  s->info = png_create_info_struct(s->png);
  if (s->info == nullptr) return copy_message(s->error, sizeof s->error, "cannot create a PNG writer"), false;
  s->rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * height));
  if (s->rows == nullptr) return copy_message(s->error, sizeof s->error, "out of memory"), false;
  for (uint32_t y = 0; y < height; ++y) s->rows[y] = const_cast<png_bytep>(rgb + size_t{y} * width * 3);
  if (setjmp(png_jmpbuf(s->png))) return false;
  png_set_write_fn(s->png, s, fx_png_write_bytes, fx_png_flush_bytes);
  png_set_IHDR(s->png, s->info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (n_text > 0) png_set_text(s->png, s->info, text, n_text);
  png_write_info(s->png, s->info);
  png_write_image(s->png, s->rows);
  png_write_end(s->png, s->info);
  return true;
}

// Decodes to 8-bit RGB (with_pixels) and/or reads through to the end for text chunks after the image.
bool fx_png_decode_c(PngState* s, bool with_pixels) {
  s->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, s, fx_png_on_error, fx_png_on_warning, nullptr,
                                    fx_png_malloc, fx_png_free);
  if (s->png == nullptr) return copy_message(s->error, sizeof s->error, "cannot create a PNG reader"), false;
  s->info = png_create_info_struct(s->png);
  s->end_info = png_create_info_struct(s->png);
  if (s->info == nullptr || s->end_info == nullptr)
    return copy_message(s->error, sizeof s->error, "cannot create a PNG reader"), false;
  if (setjmp(png_jmpbuf(s->png))) return false;
  png_set_read_fn(s->png, s, fx_png_read_bytes);
  png_set_user_limits(s->png, kMaxSide, kMaxSide);
  png_set_chunk_cache_max(s->png, 1000);
  png_read_info(s->png, s->info);
  s->width = png_get_image_width(s->png, s->info);
  s->height = png_get_image_height(s->png, s->info);
  if (uint64_t{s->width} * s->height > s->max_pixels) {
    char msg[128];
    std::snprintf(msg, sizeof msg, "image %ux%u: expected at most %llu pixels", s->width, s->height,
                  static_cast<unsigned long long>(s->max_pixels));
    png_error(s->png, msg);
  }
  // Any colour type and depth -> 8-bit RGB: palette and low-depth grey expand, 16 bits scale down,
  // transparency (alpha or tRNS) is dropped, grey is replicated.
  png_set_expand(s->png);
  png_set_scale_16(s->png);
  png_set_strip_alpha(s->png);
  png_set_gray_to_rgb(s->png);
  png_set_interlace_handling(s->png);
  png_read_update_info(s->png, s->info);
  if (png_get_rowbytes(s->png, s->info) != size_t{s->width} * 3)
    png_error(s->png, "unexpected row size after conversion");
  const size_t stride = size_t{s->width} * 3;
  s->pixels = static_cast<uint8_t*>(std::malloc(stride * s->height + 1));
  s->rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * (s->height + 1)));
  if (s->pixels == nullptr || s->rows == nullptr) png_error(s->png, "out of memory");
  for (uint32_t y = 0; y < s->height; ++y) s->rows[y] = s->pixels + y * stride;
  png_read_image(s->png, s->rows);
  if (!with_pixels) png_read_end(s->png, s->end_info);
  return true;
}

std::string png_reason(const PngState& s) {
  return s.warning[0] != 0 ? str_cat(s.error, " (", s.warning, ")") : std::string(s.error);
}

bool is_png(const uint8_t* data, size_t size) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return size >= 8 && std::memcmp(data, sig, 8) == 0;
}

// ---- JPEG -----------------------------------------------------------------------------------------------

struct JpegState {
  uint64_t max_pixels = kMaxPixels;
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr err{};
  jmp_buf jump{};
  bool created = false;
  char error[JMSG_LENGTH_MAX + 64] = {};
  uint8_t* pixels = nullptr;
  uint32_t width = 0;
  uint32_t height = 0;

  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
    std::free(pixels);
  }
};

extern "C" void fx_jpeg_on_error(j_common_ptr cinfo) {
  auto* s = static_cast<JpegState*>(cinfo->client_data);
  char msg[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, msg);
  copy_message(s->error, sizeof s->error, msg);
  std::longjmp(s->jump, 1);
}

// libjpeg pads a truncated stream with a fake end marker and only warns: treat that warning as an error.
extern "C" void fx_jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) fx_jpeg_on_error(cinfo);
}

bool fx_jpeg_decode_c(JpegState* s, const uint8_t* data, size_t size) {
  s->cinfo.err = jpeg_std_error(&s->err);
  s->err.error_exit = fx_jpeg_on_error;
  s->err.emit_message = fx_jpeg_on_message;
  s->cinfo.client_data = s;
  if (setjmp(s->jump)) return false;
  jpeg_create_decompress(&s->cinfo);
  s->created = true;
  jpeg_mem_src(&s->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&s->cinfo, TRUE);
  if (s->cinfo.image_width > kMaxSide || s->cinfo.image_height > kMaxSide) {
    std::snprintf(s->error, sizeof s->error, "image %ux%u: expected at most %u pixels per side", s->cinfo.image_width,
                  s->cinfo.image_height, kMaxSide);
    return false;
  }
  s->cinfo.out_color_space = JCS_RGB;  // grey and YCbCr convert; CMYK is refused by libjpeg itself
  jpeg_start_decompress(&s->cinfo);
  s->width = s->cinfo.output_width;
  s->height = s->cinfo.output_height;
  if (s->width > kMaxSide || s->height > kMaxSide || uint64_t{s->width} * s->height > s->max_pixels) {
    std::snprintf(s->error, sizeof s->error, "image %ux%u: expected at most %llu pixels", s->width, s->height,
                  static_cast<unsigned long long>(s->max_pixels));
    return false;
  }
  if (s->cinfo.output_components != 3) {
    copy_message(s->error, sizeof s->error, "could not convert to RGB");
    return false;
  }
  const size_t stride = size_t{s->width} * 3;
  s->pixels = static_cast<uint8_t*>(std::malloc(stride * s->height + 1));
  if (s->pixels == nullptr) return copy_message(s->error, sizeof s->error, "out of memory"), false;
  while (s->cinfo.output_scanline < s->height) {
    JSAMPROW row = s->pixels + s->cinfo.output_scanline * stride;
    jpeg_read_scanlines(&s->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&s->cinfo);
  return true;
}

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

void check_image(const Image& image, const std::string& what) {
  FLUX_CHECK(image.width > 0 && image.height > 0 && static_cast<uint64_t>(image.width) <= kMaxSide &&
                 static_cast<uint64_t>(image.height) <= kMaxSide,
             what, ": image size ", image.width, "x", image.height, " is not in 1..", kMaxSide);
  const size_t want = static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3;
  FLUX_CHECK(image.pixels.size() == want, what, ": expected ", want, " RGB bytes for ", image.width, "x", image.height,
             ", got ", image.pixels.size());
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  auto file = MappedFile::open(path);
  return std::vector<uint8_t>(file->data(), file->data() + file->size());
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& image, const std::map<std::string, std::string>& text) {
  check_image(image, "PNG encode");
  std::vector<png_text> chunks;
  for (const auto& [key, value] : text) {
    FLUX_CHECK(!key.empty() && key.size() <= 79, "PNG text key '", key, "': expected 1..79 characters, got ",
               key.size());
    for (char c : key) FLUX_CHECK(c >= 32 && c <= 126, "PNG text key '", key, "': expected printable ASCII characters");
    bool ascii = true;
    for (char c : value) ascii = ascii && static_cast<unsigned char>(c) < 128;
    png_text t{};
    t.key = const_cast<char*>(key.c_str());
    t.text = const_cast<char*>(value.c_str());
    if (ascii) {
      t.compression = PNG_TEXT_COMPRESSION_NONE;
      t.text_length = value.size();
    } else {  // UTF-8 needs an iTXt chunk (tEXt is Latin-1)
      t.compression = PNG_ITXT_COMPRESSION_NONE;
      t.itxt_length = value.size();
      t.lang = const_cast<char*>("");
      t.lang_key = const_cast<char*>("");
    }
    chunks.push_back(t);
  }
  PngState s;
  if (!fx_png_encode_c(&s, image.pixels.data(), static_cast<uint32_t>(image.width), static_cast<uint32_t>(image.height),
                       chunks.data(), static_cast<int>(chunks.size())))
    fail("PNG encode: ", s.error);
  return std::vector<uint8_t>(s.out, s.out + s.out_size);
}

void write_png(const std::string& path, const Image& image, const std::map<std::string, std::string>& text) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(image, text);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  FLUX_CHECK(f != nullptr, path, ": cannot create: ", std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": cannot write: ", std::strerror(ok ? errno : err));
  }
}

// Every chunk's length must fit in the bytes that follow it. libpng allocates a chunk's claimed length
// before reading it (fuzzing found a 75-byte file whose tEXt claimed 755 MB), and Debian's build ignores
// png_set_chunk_malloc_max; the whole file is in memory here, so the claim can be checked first.
static void check_png_chunks(const uint8_t* data, size_t size, const std::string& name) {
  size_t at = 8;  // after the signature
  while (at + 12 <= size) {
    const uint32_t length = (uint32_t{data[at]} << 24) | (uint32_t{data[at + 1]} << 16) |
                            (uint32_t{data[at + 2]} << 8) | uint32_t{data[at + 3]};
    const std::string type(reinterpret_cast<const char*>(data + at + 4), 4);
    const size_t left = size - at - 12;
    if (length > left) {
      std::string printable;
      for (char c : type) printable += (c >= 32 && c < 127) ? c : '?';
      fail(name, ": invalid PNG: chunk '", printable, "' at byte ", at, " claims ", length, " bytes, only ", left,
           " follow");
    }
    if (type == "IEND") return;
    at += 12 + length;
  }
}

Image decode_image(const uint8_t* data, size_t size, const std::string& name, uint64_t max_pixels) {
  max_pixels = std::min(max_pixels, kMaxPixels);
  Image image;
  if (is_png(data, size)) {
    check_png_chunks(data, size, name);
    PngState s;
    s.max_pixels = max_pixels;
    s.in = data;
    s.in_size = size;
    if (!fx_png_decode_c(&s, true)) fail(name, ": invalid PNG: ", png_reason(s));
    image.width = static_cast<int>(s.width);
    image.height = static_cast<int>(s.height);
    image.pixels.assign(s.pixels, s.pixels + size_t{s.width} * s.height * 3);
    return image;
  }
  if (is_jpeg(data, size)) {
    JpegState s;
    s.max_pixels = max_pixels;
    if (!fx_jpeg_decode_c(&s, data, size)) fail(name, ": invalid JPEG: ", s.error);
    image.width = static_cast<int>(s.width);
    image.height = static_cast<int>(s.height);
    image.pixels.assign(s.pixels, s.pixels + size_t{s.width} * s.height * 3);
    return image;
  }
  std::string head;
  for (size_t i = 0; i < std::min<size_t>(size, 4); ++i) head += str_cat(i ? " " : "", std::hex, int{data[i]});
  fail(name, ": not a PNG or JPEG image (", size, " bytes, starting ", head.empty() ? "<empty>" : head, ")");
}

Image read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

std::map<std::string, std::string> read_png_text(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  FLUX_CHECK(is_png(bytes.data(), bytes.size()), path, ": not a PNG file");
  PngState s;
  s.in = bytes.data();
  s.in_size = bytes.size();
  if (!fx_png_decode_c(&s, false)) fail(path, ": invalid PNG: ", png_reason(s));
  std::map<std::string, std::string> out;
  for (png_infop info : {s.info, s.end_info}) {
    png_textp text = nullptr;
    int n = 0;
    png_get_text(s.png, info, &text, &n);
    for (int i = 0; i < n; ++i) {
      const size_t len = text[i].compression > 0 ? text[i].itxt_length : text[i].text_length;
      out[text[i].key] = std::string(text[i].text, len);
    }
  }
  return out;
}

}  // namespace flux
