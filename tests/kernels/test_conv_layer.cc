// kernels::Conv2d on FeatureMaps (cached primitives, any input block, per_call mode, bf16 where the CPU has
// it), FeatureMap's layout conversions, and group norm + SiLU / upsampling on the blocked layouts against their
// plain twins, on awkward sizes at every ISA level.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/cpu.h"
#include "isa_levels.h"
#include "kernels/conv.h"
#include "kernels/conv_layer.h"
#include "kernels/norm.h"
#include "tensor/tensor.h"
#include "test_util.h"

namespace flux::test {
namespace {

using kernels::FeatureMap;

// Blocks a FeatureMap may hold: plain, AVX2's, AVX-512's, and an odd one.
const int64_t kBlocks[] = {1, 8, 16, 3};

std::vector<float> plain_of(const FeatureMap& m) {
  std::vector<float> out(size_t(m.channels() * m.height() * m.width()));
  m.to_plain(out.data());
  return out;
}

TEST(FeatureMap, LayoutRoundTrips) {
  const int64_t c = 11, h = 5, w = 7, hw = h * w;
  const auto x = random_floats(size_t(c * hw), 1);
  for (int64_t block : kBlocks) {
    FeatureMap m;
    m.from_plain(x.data(), c, h, w, block);
    EXPECT_EQ(m.n_blocks(), (c + block - 1) / block);
    EXPECT_EQ(plain_of(m), x) << "block " << block;
    // channel 9, pixel 4 sits at block 9 / b, lane 9 % b
    EXPECT_EQ(m.data()[((9 / block) * hw + 4) * block + 9 % block], x[size_t(9 * hw + 4)]);
    if (block > 1 && c % block != 0) {
      EXPECT_EQ(m.data()[m.n_floats() - 1], 0.0f) << "padding lane";
    }
    for (int64_t other : kBlocks) {
      FeatureMap r;
      m.reblock(other, r);
      EXPECT_EQ(r.block(), other);
      EXPECT_EQ(plain_of(r), x) << block << " -> " << other;
    }
    std::vector<float> rows(size_t(hw * c));
    m.to_rows(rows.data());
    EXPECT_EQ(rows[size_t(4 * c + 9)], x[size_t(9 * hw + 4)]);
    m.add_rows(rows.data());  // x + x
    const auto doubled = plain_of(m);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(doubled[i], 2 * x[i]) << i;
  }
}

TEST(GroupNormBlocked, MatchesPlainTwinsOnEveryIsa) {
  struct Case {
    int64_t channels, spatial, groups;
  };
  // 24 channels in 6 groups of 4: two groups share an 8-lane block, 16-lane blocks pad 8 lanes; 1100 pixels
  // cross a 1024-pixel chunk; 37 is odd.
  const Case cases[] = {{24, 37, 6}, {24, 1100, 6}, {64, 19, 32}, {6, 3, 2}};
  for (const Case& cs : cases) {
    const auto x = random_floats(size_t(cs.channels * cs.spatial), 2, -3.0f, 5.0f);  // mean far from 0
    const auto gamma = random_floats(size_t(cs.channels), 3, 0.5f, 1.5f);
    const auto beta = random_floats(size_t(cs.channels), 4);
    for (bool silu : {false, true}) {
      // The plain twin: group_norm on [C, HW], then x sigmoid(x) in double.
      std::vector<float> want(x.size());
      kernels::reference::group_norm(x.data(), want.data(), cs.channels, cs.spatial, cs.groups, gamma.data(),
                                     beta.data(), 1e-6f);
      if (silu)
        for (float& v : want) v = static_cast<float>(v / (1.0 + std::exp(-double(v))));
      for (int64_t block : kBlocks) {
        FeatureMap in;
        in.from_plain(x.data(), cs.channels, 1, cs.spatial, block);
        FeatureMap ref;
        ref.reshape(cs.channels, 1, cs.spatial, block);
        kernels::reference::group_norm_blocked(in.data(), ref.data(), cs.channels, cs.spatial, block, cs.groups,
                                               gamma.data(), beta.data(), 1e-6f, silu);
        EXPECT_LE(compare(plain_of(ref).data(), want.data(), want.size()).max_rel, 1e-6);
        for_each_isa([&](IsaLevel) {
          FeatureMap got;
          got.reshape(cs.channels, 1, cs.spatial, block);
          std::fill(got.data(), got.data() + got.n_floats(), NAN);
          kernels::group_norm_blocked(in.data(), got.data(), cs.channels, cs.spatial, block, cs.groups, gamma.data(),
                                      beta.data(), 1e-6f, silu);
          const std::string what = str_cat(cs.channels, "x", cs.spatial, " block ", block, " silu ", silu);
          EXPECT_LE(compare(plain_of(got).data(), want.data(), want.size()).max_rel, 2e-6) << what;
          for (int64_t i = 0; i < got.n_floats(); ++i) {  // padding lanes are written as 0
            const int64_t c = (i / (block * cs.spatial)) * block + i % block;
            if (c >= cs.channels) {
              ASSERT_EQ(got.data()[i], 0.0f) << what << " at " << i;
            }
          }
          in.reblock(block, got);  // in place (y == x), no affine
          kernels::group_norm_blocked(got.data(), got.data(), cs.channels, cs.spatial, block, cs.groups, nullptr,
                                      nullptr, 1e-6f, false);
          kernels::reference::group_norm_blocked(in.data(), ref.data(), cs.channels, cs.spatial, block, cs.groups,
                                                 nullptr, nullptr, 1e-6f, false);
          EXPECT_LE(compare(got.data(), ref.data(), size_t(got.n_floats())).max_rel, 2e-6) << what << " in place";
        });
      }
    }
  }
}

TEST(UpsampleBlocked, MatchesPlainTwin) {
  const int64_t c = 13, h = 3, w = 5;
  const auto x = random_floats(size_t(c * h * w), 5);
  std::vector<float> want(size_t(4 * c * h * w));
  kernels::reference::upsample_nearest2x(x.data(), want.data(), c, h, w);
  for (int64_t block : kBlocks) {
    FeatureMap in, out;
    in.from_plain(x.data(), c, h, w, block);
    out.reshape(c, 2 * h, 2 * w, block);
    kernels::upsample_nearest2x_blocked(in.data(), out.data(), c, h, w, block);
    EXPECT_EQ(plain_of(out), want) << "block " << block;
  }
}

struct ConvCase {
  kernels::Conv2dParams p;  // channels, kernel, stride, padding, size
  bool bias;
};

// The FLUX VAE's convolution kinds on awkward sizes: 3x3 same padding; 1x1; stride 2 padded bottom/right only;
// a 3-channel image in; 3 channels out; more input channels than a block.
const ConvCase kConvCases[] = {
    {{.in_channels = 16, .out_channels = 24, .height = 13, .width = 11}, true},
    {{.in_channels = 24, .out_channels = 16, .height = 7, .width = 9, .kernel = 1, .pad_top = 0, .pad_bottom = 0,
      .pad_left = 0, .pad_right = 0},
     true},
    {{.in_channels = 16, .out_channels = 16, .height = 12, .width = 9, .stride = 2, .pad_top = 0, .pad_bottom = 1,
      .pad_left = 0, .pad_right = 1},
     true},
    {{.in_channels = 3, .out_channels = 32, .height = 10, .width = 6}, true},
    {{.in_channels = 40, .out_channels = 3, .height = 9, .width = 8}, false},
};

Tensor tensor_of(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_f32(shape, std::span<const float>(v.data(), v.size()));
}

void check_conv_layer(const ConvCase& cs, kernels::ConvMode mode, DType compute, double tol) {
  const kernels::Conv2dParams& p = cs.p;
  const auto x = random_floats(size_t(p.in_channels * p.height * p.width), 11);
  const auto w = random_floats(size_t(p.out_channels * p.in_channels * p.kernel * p.kernel), 12);
  const auto b = random_floats(size_t(p.out_channels), 13);
  std::vector<float> want(size_t(p.out_channels * p.out_height() * p.out_width()));
  kernels::reference::conv2d(p, x.data(), w.data(), cs.bias ? b.data() : nullptr, want.data());
  const kernels::Conv2d conv(tensor_of(w, {p.out_channels, p.in_channels, p.kernel, p.kernel}),
                             cs.bias ? tensor_of(b, {p.out_channels}) : Tensor(), p, compute, mode);
  EXPECT_EQ(conv.compute_dtype(), compute);
  for (int64_t block : {int64_t{1}, kernels::conv_preferred_block(), int64_t{3}}) {
    FeatureMap in, out;
    in.from_plain(x.data(), p.in_channels, p.height, p.width, block);
    for (int rep = 0; rep < 2; ++rep) {  // the second call reuses the cached primitive and the output buffer
      conv.forward(in, out);
      const std::string what = str_cat(p.in_channels, "->", p.out_channels, " k", p.kernel, " s", p.stride, " ",
                                       p.height, "x", p.width, " input block ", block, " call ", rep);
      ASSERT_EQ(out.channels(), p.out_channels) << what;
      ASSERT_EQ(out.height(), p.out_height()) << what;
      ASSERT_EQ(out.width(), p.out_width()) << what;
      if (mode == kernels::ConvMode::per_call || isa_level() == IsaLevel::scalar) {
        EXPECT_EQ(out.block(), 1) << what;
      }
      EXPECT_LE(compare(plain_of(out).data(), want.data(), want.size()).max_rel, tol) << what;
    }
  }
}

TEST(Conv2dLayer, MatchesReferenceOnEveryIsa) {
  for_each_isa([](IsaLevel) {
    for (const ConvCase& cs : kConvCases) check_conv_layer(cs, kernels::ConvMode::cached, DType::f32, 1e-5);
  });
}

TEST(Conv2dLayer, PerCallModeMatchesReference) {
  for (const ConvCase& cs : kConvCases) check_conv_layer(cs, kernels::ConvMode::per_call, DType::f32, 1e-5);
}

TEST(Conv2dLayer, NewInputSizeMakesItsOwnPrimitive) {
  const kernels::Conv2dParams p{.in_channels = 16, .out_channels = 16, .height = 8, .width = 8};
  const auto w = random_floats(size_t(16 * 16 * 9), 21);
  const kernels::Conv2d conv(tensor_of(w, {16, 16, 3, 3}), Tensor(), p);
  FeatureMap in, out;
  for (int64_t size : {8, 20, 8}) {  // grows, then shrinks into the same buffers
    kernels::Conv2dParams q = p;
    q.height = size;
    q.width = size + 3;
    const auto x = random_floats(size_t(16 * q.height * q.width), 22 + size);
    std::vector<float> want(size_t(16 * q.height * q.width));
    kernels::reference::conv2d(q, x.data(), w.data(), nullptr, want.data());
    in.from_plain(x.data(), 16, q.height, q.width, kernels::conv_preferred_block());
    conv.forward(in, out);
    ASSERT_EQ(out.height(), q.height);
    ASSERT_EQ(out.width(), q.width);
    EXPECT_LE(compare(plain_of(out).data(), want.data(), want.size()).max_rel, 1e-5) << size;
  }
}

TEST(Conv2dLayer, Bf16ProductsWhereSupported) {
  if (!kernels::conv_bf16_supported()) {
    GTEST_SKIP() << "this CPU lacks AVX512_BF16 (" << cpu_detected().describe()
                 << "): bf16 convolutions fall back to f32 here";
  }
  // bf16 rounds each input and weight to 8 significant bits: about 2^-8 relative per product, averaging out
  // over the sums.
  for (const ConvCase& cs : kConvCases) check_conv_layer(cs, kernels::ConvMode::cached, DType::bf16, 2e-2);
}

// The bf16 (fast) mode on AVX-512 runs 3x3 stride-1 layers with channels in multiples of 16 as f32 Winograd from
// 64x64 inputs on (smaller inputs too where oneDNN keeps the transformed weight's layout), direct bf16 when turned
// off: told apart by their error against the f32 reference (f32 Winograd ~1e-7, bf16 rounding ~1e-3).
TEST(Conv2dLayer, FastModeRunsWinogradFromSixtyFourPixels) {
  if (!kernels::conv_bf16_supported() || isa_level() != IsaLevel::avx512) {
    GTEST_SKIP() << "needs AVX-512 with AVX512_BF16 (" << cpu_detected().describe() << ")";
  }
  const auto w = random_floats(size_t(48 * 32 * 9), 41);
  const auto b = random_floats(48, 42);
  auto rms_error = [&](const kernels::Conv2d& conv, int64_t h, int64_t wd) {
    const kernels::Conv2dParams q{.in_channels = 32, .out_channels = 48, .height = h, .width = wd};
    const auto x = random_floats(size_t(32 * h * wd), 43);
    std::vector<float> want(size_t(48 * h * wd));
    kernels::reference::conv2d(q, x.data(), w.data(), b.data(), want.data());
    FeatureMap in, out;
    in.from_plain(x.data(), 32, h, wd, kernels::conv_preferred_block());
    conv.forward(in, out);
    const std::vector<float> got = plain_of(out);
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
      den += double(want[i]) * want[i];
    }
    return std::sqrt(num / den);
  };
  const kernels::Conv2dParams p{.in_channels = 32, .out_channels = 48};
  EXPECT_TRUE(kernels::conv_winograd_applies(48, 32, 3, 1, DType::bf16));
  EXPECT_FALSE(kernels::conv_winograd_applies(48, 32, 3, 2, DType::bf16)) << "stride 2";
  EXPECT_FALSE(kernels::conv_winograd_applies(48, 40, 3, 1, DType::bf16)) << "40 channels";
  EXPECT_FALSE(kernels::conv_winograd_applies(48, 32, 3, 1, DType::f32)) << "the exact mode stays direct";
  const kernels::Conv2d fast(tensor_of(w, {48, 32, 3, 3}), tensor_of(b, {48}), p, DType::bf16);
  fast.prepare();
  EXPECT_LT(rms_error(fast, 70, 66), 1e-5) << "70x66: Winograd in f32";
  EXPECT_LT(rms_error(fast, 66, 64), 1e-5) << "66x64: Winograd again, same weight";
  kernels::set_conv_winograd(false);
  const kernels::Conv2d direct(tensor_of(w, {48, 32, 3, 3}), tensor_of(b, {48}), p, DType::bf16);
  kernels::set_conv_winograd(true);
  const double e = rms_error(direct, 70, 66);
  EXPECT_GT(e, 1e-4) << "Winograd off: direct bf16";
  EXPECT_LT(e, 2e-2);
}

TEST(Conv2dLayer, Bf16FallsBackToF32WithoutSupport) {
  const auto w = random_floats(16 * 16 * 9, 31);
  const kernels::Conv2d conv(tensor_of(w, {16, 16, 3, 3}), Tensor(), {}, DType::bf16);
  EXPECT_EQ(conv.compute_dtype(), kernels::conv_bf16_supported() ? DType::bf16 : DType::f32);
}

}  // namespace
}  // namespace flux::test
