// resize_cover: scale to cover, centre crop (io/image_resize.h).
#include <gtest/gtest.h>

#include <cstdlib>

#include "base/error.h"
#include "io/image_resize.h"

namespace flux {
namespace {

Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  Image img{w, h, {}};
  for (int i = 0; i < w * h; ++i) img.pixels.insert(img.pixels.end(), {r, g, b});
  return img;
}

const uint8_t* px(const Image& img, int x, int y) {
  return img.pixels.data() + (static_cast<size_t>(y) * img.width + x) * 3;
}

TEST(ResizeCover, SameSizeIsUnchanged) {
  Image img{5, 3, {}};
  for (int i = 0; i < 5 * 3 * 3; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 17));
  const Image out = resize_cover(img, 5, 3);
  EXPECT_EQ(out.pixels, img.pixels);
}

TEST(ResizeCover, SolidStaysSolidAtAnySize) {
  const Image img = solid(37, 23, 10, 200, 77);
  for (auto [w, h] : {std::pair{64, 64}, {16, 80}, {200, 9}, {1, 1}}) {
    const Image out = resize_cover(img, w, h);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    for (int i = 0; i < w * h; ++i) {
      ASSERT_EQ(out.pixels[i * 3 + 0], 10);
      ASSERT_EQ(out.pixels[i * 3 + 1], 200);
      ASSERT_EQ(out.pixels[i * 3 + 2], 77);
    }
  }
}

// A 128x64 picture for a square target: scale 1 (the height fits), the centre 64 columns kept, left and
// right quarters cut; at scale 1 on the pixel grid the cubic kernel is exact (weights 1, 0, 0).
TEST(ResizeCover, WidePictureKeepsTheCentreColumns) {
  Image img{128, 64, {}};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 128; ++x) {
      const bool centre = x >= 32 && x < 96;
      img.pixels.insert(img.pixels.end(),
                        {static_cast<uint8_t>(centre ? 0 : 255), static_cast<uint8_t>(x), static_cast<uint8_t>(y)});
    }
  const Image out = resize_cover(img, 64, 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      ASSERT_EQ(px(out, x, y)[0], 0) << x << "," << y;
      ASSERT_EQ(px(out, x, y)[1], x + 32) << x << "," << y;
      ASSERT_EQ(px(out, x, y)[2], y) << x << "," << y;
    }
}

// A tall picture: the centre rows are kept; scaled 2x down and cropped top and bottom.
TEST(ResizeCover, TallPictureKeepsTheCentreRowsScaled) {
  // 32x128 -> 16x16: scale 0.5, the window is 32x32 source pixels centred: rows 48..79.
  Image img{32, 128, {}};
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 32; ++x) {
      const bool inside = y >= 48 && y < 80;
      img.pixels.insert(img.pixels.end(), {static_cast<uint8_t>(inside ? 40 : 250), 0, 0});
    }
  const Image out = resize_cover(img, 16, 16);
  ASSERT_EQ(out.width, 16);
  ASSERT_EQ(out.height, 16);
  // Rows away from the crop edges see only the centre part; the edge rows may blend a little of the outside.
  for (int y = 2; y < 14; ++y)
    for (int x = 0; x < 16; ++x) ASSERT_EQ(px(out, x, y)[0], 40) << x << "," << y;
  EXPECT_LT(px(out, 0, 0)[0], 80);
}

// Shrinking antialiases: a 1-pixel checkerboard becomes an even grey, not an alias pattern.
TEST(ResizeCover, ShrinkingAntialiases) {
  Image img{64, 64, {}};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      const uint8_t v = (x + y) % 2 ? 255 : 0;
      img.pixels.insert(img.pixels.end(), {v, v, v});
    }
  const Image out = resize_cover(img, 16, 16);
  for (int y = 1; y < 15; ++y)
    for (int x = 1; x < 15; ++x) EXPECT_NEAR(px(out, x, y)[0], 127.5, 3) << x << "," << y;
}

// Enlarging a horizontal ramp keeps it monotone and within the source's range.
TEST(ResizeCover, EnlargingARampStaysMonotone) {
  Image img{16, 16, {}};
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) img.pixels.insert(img.pixels.end(), {static_cast<uint8_t>(x * 16), 0, 0});
  const Image out = resize_cover(img, 64, 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 1; x < 64; ++x) ASSERT_GE(px(out, x, y)[0] + 1, px(out, x - 1, y)[0]) << x << "," << y;
  EXPECT_LE(px(out, 0, 0)[0], 8);
  EXPECT_GE(px(out, 63, 0)[0], 232);
}

TEST(ResizeCover, RefusesBadInput) {
  EXPECT_THROW(resize_cover(Image{}, 16, 16), Error);
  EXPECT_THROW(resize_cover(solid(4, 4, 0, 0, 0), 0, 16), Error);
  Image short_pixels = solid(4, 4, 0, 0, 0);
  short_pixels.pixels.pop_back();
  EXPECT_THROW(resize_cover(short_pixels, 8, 8), Error);
}

}  // namespace
}  // namespace flux
