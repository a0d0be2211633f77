// conv2d (oneDNN path, and im2col + GEMM on every ISA) and nearest 2x upsampling against their reference twins.
#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"
#include "isa_levels.h"
#include "kernels/conv.h"
#include "kernels/internal.h"
#include "test_util.h"

namespace flux::test {
namespace {

void check_conv(const kernels::Conv2dParams& p, bool with_bias) {
  const auto x = random_floats(size_t(p.in_channels * p.height * p.width), 1);
  const auto w = random_floats(size_t(p.out_channels * p.in_channels * p.kernel * p.kernel), 2);
  const auto b = random_floats(size_t(p.out_channels), 3);
  const size_t n_out = size_t(p.out_channels * p.out_height() * p.out_width());
  std::vector<float> want(n_out), got(n_out);
  kernels::reference::conv2d(p, x.data(), w.data(), with_bias ? b.data() : nullptr, want.data());
  const auto shape = [&] {
    return str_cat(p.in_channels, "->", p.out_channels, " k", p.kernel, " s", p.stride, " ", p.height, "x", p.width);
  };
  std::fill(got.begin(), got.end(), NAN);
  kernels::conv2d(p, x.data(), w.data(), with_bias ? b.data() : nullptr, got.data());  // oneDNN
  EXPECT_LE(compare(got.data(), want.data(), n_out).max_rel, 1e-5) << shape();
  for_each_isa([&](IsaLevel) {
    std::fill(got.begin(), got.end(), NAN);
    kernels::detail::conv2d_im2col(p, x.data(), w.data(), with_bias ? b.data() : nullptr, got.data());
    EXPECT_LE(compare(got.data(), want.data(), n_out).max_rel, 1e-5) << "im2col " << shape();
  });
}

TEST(Conv2d, ThreeByThreeSamePadding) {
  check_conv({.in_channels = 5, .out_channels = 7, .height = 13, .width = 11}, true);
}

TEST(Conv2d, OneByOne) {
  check_conv({.in_channels = 9,
              .out_channels = 6,
              .height = 10,
              .width = 7,
              .kernel = 1,
              .pad_top = 0,
              .pad_bottom = 0,
              .pad_left = 0,
              .pad_right = 0},
             true);
  check_conv({.in_channels = 3, .out_channels = 4, .height = 5, .width = 6, .kernel = 1}, false);  // padded 1x1
}

TEST(Conv2d, StrideTwoPadBottomRightOnly) {
  // FLUX VAE Downsample: F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv without padding.
  const kernels::Conv2dParams p{.in_channels = 6,
                                .out_channels = 5,
                                .height = 12,
                                .width = 9,
                                .stride = 2,
                                .pad_top = 0,
                                .pad_bottom = 1,
                                .pad_left = 0,
                                .pad_right = 1};
  EXPECT_EQ(p.out_height(), 6);
  EXPECT_EQ(p.out_width(), 4);  // (9 + 1 - 3) / 2 + 1
  check_conv(p, true);
  check_conv({.in_channels = 4, .out_channels = 3, .height = 7, .width = 8, .stride = 2}, false);
}

TEST(Conv2d, ManyInputChannelsCrossPixelChunks) {
  // 300 input channels: k = 2700, so im2col takes 1536 pixels at a time: 60 x 40 output pixels span two chunks,
  // the first ending mid-row.
  check_conv({.in_channels = 300, .out_channels = 3, .height = 60, .width = 40}, true);
}

TEST(Conv2d, RejectsBadParams) {
  float dummy = 0;
  EXPECT_THROW(kernels::conv2d({.in_channels = 1,
                                .out_channels = 1,
                                .height = 1,
                                .width = 1,
                                .kernel = 5,
                                .pad_top = 0,
                                .pad_bottom = 0,
                                .pad_left = 0,
                                .pad_right = 0},
                               &dummy, &dummy, nullptr, &dummy),
               Error);
  EXPECT_THROW(
      kernels::conv2d({.in_channels = 0, .out_channels = 1, .height = 1, .width = 1}, &dummy, &dummy, nullptr, &dummy),
      Error);
}

TEST(Upsample, Nearest2x) {
  const int64_t c = 3, h = 5, w = 7;
  const auto x = random_floats(size_t(c * h * w), 4);
  std::vector<float> want(size_t(4 * c * h * w)), got(want.size());
  kernels::reference::upsample_nearest2x(x.data(), want.data(), c, h, w);
  kernels::upsample_nearest2x(x.data(), got.data(), c, h, w);
  EXPECT_EQ(got, want);
  EXPECT_EQ(got[size_t(2 * w + 1)], x[0]);  // output (1, 1) repeats input (0, 0)
  EXPECT_EQ(got[size_t(2 * w + 2)], x[1]);
}

}  // namespace
}  // namespace flux::test
