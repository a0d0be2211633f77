// multipart/form-data parsing, base64 and image uploads (server/multipart.h, server/image_upload.h), without
// sockets: well-formed bodies from the shapes clients send, and malformed ones refused with a 400 naming why.
#include "server/multipart.h"

#include <gtest/gtest.h>

#include "io/image.h"
#include "server/errors.h"
#include "server/image_upload.h"
#include "server/sse.h"

namespace flux::server {
namespace {

const std::string kType = "multipart/form-data; boundary=XyZ";

std::string field(const std::string& name, const std::string& value) {
  return "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n";
}
std::string file(const std::string& name, const std::string& filename, const std::string& data) {
  return "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"; filename=\"" + filename +
         "\"\r\nContent-Type: image/png\r\n\r\n" + data + "\r\n";
}
const std::string kEnd = "--XyZ--\r\n";

// The HttpError thrown by `fn`, or a failure.
template <typename Fn>
HttpError refusal(Fn fn) {
  try {
    fn();
  } catch (const HttpError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted";
  return HttpError(0, "");
}

TEST(Multipart, BoundaryFromContentType) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data;boundary=\"a b;c\""), "a b;c");
  EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8; boundary=----x"), "----x");
  EXPECT_TRUE(is_multipart_form("multipart/form-data; boundary=abc"));
  EXPECT_FALSE(is_multipart_form("application/json"));
  for (const char* bad : {"application/json", "multipart/form-data", "multipart/form-data; boundary=",
                          "multipart/form-data; boundary=\"abc", "multipart/mixed; boundary=a"}) {
    const HttpError e = refusal([&] { multipart_boundary(bad); });
    EXPECT_EQ(e.status, 400) << bad;
    EXPECT_NE(std::string(e.what()).find("multipart body"), std::string::npos) << e.what();
  }
  EXPECT_EQ(refusal([] { multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')); }).status, 400);
}

TEST(Multipart, PartsFieldsAndFiles) {
  const std::string binary("\x89PNG\r\n\x1a\n\0\r\n--Xy", 15);  // CRLF and a partial boundary inside the data
  const std::string body = "preamble\r\n" + field("prompt", "a cat") + file("image", "in.png", binary) +
                           field("n", "2") + "--XyZ--\r\nepilogue";
  const auto parts = parse_multipart(body, kType);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].name, "prompt");
  EXPECT_EQ(parts[0].data, "a cat");
  EXPECT_FALSE(parts[0].has_filename);
  EXPECT_EQ(parts[1].name, "image");
  EXPECT_TRUE(parts[1].has_filename);
  EXPECT_EQ(parts[1].filename, "in.png");
  EXPECT_EQ(parts[1].content_type, "image/png");
  EXPECT_EQ(parts[1].data, binary);
  EXPECT_EQ(parts[2].data, "2");
  // Empty values and padding after a boundary are fine.
  const auto p2 = parse_multipart("--XyZ  \r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--XyZ--", kType);
  ASSERT_EQ(p2.size(), 1u);
  EXPECT_EQ(p2[0].name, "a");
  EXPECT_EQ(p2[0].data, "");
}

TEST(Multipart, MalformedBodiesAreRefused) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "no boundary line"},
      {"hello", "no boundary line"},
      {"--XyZ--\r\n", "no parts"},
      {"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue", "not terminated by a boundary"},
      {"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nno end of headers", "headers not terminated"},
      {"--XyZ\r\n\r\nvalue\r\n--XyZ--", "no Content-Disposition"},
      {"--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XyZ--", "form-data"},
      {"--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--", "no name"},
      {"--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--", "unterminated quoted"},
      {"--XyZ\r\nbroken header\r\n\r\nv\r\n--XyZ--", "header line"},
      {"--XyZjunk\r\n", "CRLF after boundary"},
      {"--XyZ\r\nContent-Disposition: form-data; name=\"" + std::string(300, 'n') + "\"\r\n\r\nv\r\n--XyZ--",
       "field name"},
      {"--XyZ\r\n" + std::string(9000, 'h') + "\r\n\r\nv\r\n--XyZ--", "within 8192 bytes"},
      {std::string("--XyZ\r\nContent-Disposition: form-data; name=\0\0x\r\n\r\nv\r\n--XyZ--", 61),
       "control characters"},
  };
  for (const auto& [body, why] : cases) {
    const HttpError e = refusal([&] { parse_multipart(body, kType); });
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "body");
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos)
        << "body " << body.substr(0, 60) << " -> " << e.what();
  }
  std::string many;
  for (int i = 0; i < 65; ++i) many += field(str_cat("f", i), "v");
  EXPECT_NE(std::string(refusal([&] { parse_multipart(many + kEnd, kType); }).what()).find("more than 64 parts"),
            std::string::npos);
}

TEST(Base64, DecodesAndRefuses) {
  auto text = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
  EXPECT_EQ(text(base64_decode("aGVsbG8=", "image")), "hello");
  EXPECT_EQ(text(base64_decode("aGVsbG8", "image")), "hello");  // padding optional
  EXPECT_EQ(text(base64_decode("aGVs\r\nbG8h", "image")), "hello!");
  EXPECT_EQ(text(base64_decode("", "image")), "");
  const std::vector<uint8_t> bytes = {0xfb, 0xff, 0xfe};
  EXPECT_EQ(base64_decode(base64_encode(bytes), "image"), bytes);
  EXPECT_EQ(base64_decode("-__-", "image"), base64_decode("+//+", "image"));  // URL-safe alphabet
  for (const char* bad : {"aGVs*G8=", "aGVsbG8=x", "a", "aGVsb==="}) {
    const HttpError e = refusal([&] { base64_decode(bad, "image"); });
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "image");
    EXPECT_NE(std::string(e.what()).find("base64"), std::string::npos) << e.what();
  }
}

Limits limits() {
  Limits l;
  l.max_pixels = 512 * 512;
  l.default_width = l.default_height = 512;
  l.max_image_pixels = 64 * 64;
  return l;
}

std::string png_of(int w, int h) {
  Image img{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3, 90)};
  const std::vector<uint8_t> png = encode_png(img);
  return std::string(png.begin(), png.end());
}

TEST(ImageUpload, JsonImageDecodedWithTheCap) {
  ImageRequest r = parse_image_request(R"({"prompt": "x", "image": ")" +
                                           base64_encode(encode_png(Image{8, 4, std::vector<uint8_t>(96, 7)})) +
                                           R"(", "strength": 0.25})",
                                       Endpoint::jobs, limits());
  EXPECT_TRUE(r.has_strength);
  EXPECT_DOUBLE_EQ(r.generate.strength, 0.25);
  decode_request_image(r, limits());
  ASSERT_TRUE(r.generate.init_image);
  EXPECT_EQ(r.generate.init_image->width, 8);
  EXPECT_EQ(r.generate.init_image->height, 4);
  EXPECT_TRUE(r.image.empty());

  // A data: URL works too.
  ImageRequest d;
  d.image = "data:image/png;base64," + base64_encode(encode_png(Image{2, 2, std::vector<uint8_t>(12, 1)}));
  decode_request_image(d, limits());
  EXPECT_EQ(d.generate.init_image->width, 2);

  struct Bad {
    std::string image;
    std::string param, why;
  };
  const std::vector<Bad> bad = {
      {"bm90IGFuIGltYWdl", "image", "not a PNG or JPEG"},  // "not an image"
      {"%%%", "image", "invalid base64"},                  //
      {base64_encode(reinterpret_cast<const uint8_t*>(png_of(65, 64).data()), png_of(65, 64).size()), "image",
       "expected at most 4096 pixels"},                         // over max_image_pixels
      {"data:text/plain;base64,aGk=", "image", "image/*"},      //
      {"data:image/png,rawdata", "image", "base64 data: URL"},  //
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.why);
    ImageRequest x;
    x.image = b.image;
    const HttpError e = refusal([&] { decode_request_image(x, limits()); });
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, b.param);
    EXPECT_NE(std::string(e.what()).find(b.why), std::string::npos) << e.what();
  }
  // strength without an image; strength out of range; image of the wrong type.
  ImageRequest s = parse_image_request(R"({"prompt": "x", "strength": 0.5})", Endpoint::jobs, limits());
  EXPECT_EQ(refusal([&] { decode_request_image(s, limits()); }).param, "strength");
  for (const char* body : {R"({"prompt": "x", "strength": 1.5})", R"({"prompt": "x", "strength": "0.5"})",
                           R"({"prompt": "x", "strength": -0.1})"}) {
    const HttpError e = refusal([&] { parse_image_request(body, Endpoint::openai, limits()); });
    EXPECT_EQ(e.param, "strength") << body;
    EXPECT_NE(std::string(e.what()).find("[0, 1]"), std::string::npos) << e.what();
  }
  EXPECT_EQ(refusal([&] { parse_image_request(R"({"prompt": "x", "image": 5})", Endpoint::openai, limits()); }).param,
            "image");
}

TEST(ImageUpload, EditsMultipartShape) {
  const std::string body = field("prompt", "a dog") + file("image", "cat.png", png_of(16, 16)) +
                           field("size", "64x64") + field("n", "2") + field("response_format", "b64_json") +
                           field("strength", "0.75") + field("seed", "7") + field("model", "flux") + kEnd;
  ImageRequest r = parse_edit_request(body, kType, limits());
  EXPECT_EQ(r.generate.prompt, "a dog");
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.generate.width, 64);
  EXPECT_EQ(r.generate.seed, 7u);
  EXPECT_DOUBLE_EQ(r.generate.strength, 0.75);
  EXPECT_FALSE(r.image_base64);
  decode_request_image(r, limits());
  ASSERT_TRUE(r.generate.init_image);
  EXPECT_EQ(r.generate.init_image->width, 16);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {field("prompt", "x") + kEnd, "image"},  // no image
      {field("prompt", "x") + file("image", "a.png", png_of(4, 4)) + file("image", "b.png", png_of(4, 4)) + kEnd,
       "image"},  // two images
      {field("prompt", "x") + file("image", "a.png", png_of(4, 4)) + file("mask", "m.png", "") + kEnd, "mask"},
      {field("prompt", "x") + file("image", "a.png", png_of(4, 4)) + field("n", "two") + kEnd, "n"},
      {field("prompt", "x") + file("image", "a.png", png_of(4, 4)) + field("strength", "2") + kEnd, "strength"},
      {field("prompt", "x") + file("image", "a.png", png_of(4, 4)) + field("prompt", "y") + kEnd, "prompt"},
      {field("prompt", "x") + file("image", "a.png", png_of(4, 4)) + field("colour", "red") + kEnd, "colour"},
      {field("prompt", "x") + file("image", "a.png", "") + kEnd, "image"},  // empty upload
  };
  for (const auto& [b, param] : bad) {
    const HttpError e = refusal([&] { parse_edit_request(b, kType, limits()); });
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, param) << e.what();
  }
  // `loras` travels as JSON text in a form field: malformed text is refused by name; an array reaches the
  // adapters' parser (which refuses it here: these limits name no LoRA folder).
  const std::string with_image = field("prompt", "x") + file("image", "a.png", png_of(4, 4));
  const HttpError not_json =
      refusal([&] { parse_edit_request(with_image + field("loras", "[{") + kEnd, kType, limits()); });
  EXPECT_EQ(not_json.param, "loras");
  EXPECT_NE(std::string(not_json.what()).find("expected JSON text"), std::string::npos) << not_json.what();
  const HttpError no_dir =
      refusal([&] { parse_edit_request(with_image + field("loras", R"([{"name": "a"}])") + kEnd, kType, limits()); });
  EXPECT_EQ(no_dir.param, "loras");
  EXPECT_NE(std::string(no_dir.what()).find("no LoRA folder"), std::string::npos) << no_dir.what();
  // A JSON body is accepted on /edits too, with the image required.
  EXPECT_EQ(refusal([&] { parse_edit_request(R"({"prompt": "x"})", "application/json", limits()); }).param, "image");
}

}  // namespace
}  // namespace flux::server
