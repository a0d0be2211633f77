#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "base/cpu.h"
#include "tensor/convert.h"
#include "tensor/tensor.h"
#include "test_util.h"

namespace flux {
namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Shape, Basics) {
  Shape s{3, 77, 768};
  EXPECT_EQ(s.ndim(), 3);
  EXPECT_EQ(s.numel(), 3 * 77 * 768);
  EXPECT_EQ(s.str(), "[3, 77, 768]");
  EXPECT_TRUE((s == Shape{3, 77, 768}));
  EXPECT_FALSE((s == Shape{3, 77}));
  EXPECT_THROW((Shape{1, 2, 3, 4, 5}), Error);
}

TEST(Tensor, OwnedViewReshapeSlice) {
  std::vector<float> v(24);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from_f32({2, 3, 4}, v);
  EXPECT_EQ(t.describe(), "f32 [2, 3, 4]");
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_THROW(t.dim(3), Error);
  Tensor r = t.reshape({6, -1});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.data<float>(), t.data<float>());  // shares storage
  EXPECT_THROW(t.reshape({5, -1}), Error);
  Tensor s = r.slice_rows(2, 4);
  EXPECT_EQ(s.shape(), (Shape{2, 4}));
  EXPECT_EQ(s.data<float>()[0], 8.0f);
  EXPECT_THROW(t.data<int64_t>(), Error);  // wrong type

  auto owner = std::make_shared<std::vector<float>>(v);
  Tensor view = Tensor::view(DType::f32, {24}, owner->data(), owner);
  EXPECT_FALSE(view.writable());
  EXPECT_THROW(view.mut<float>(), Error);
  Tensor c = view.clone();
  EXPECT_TRUE(c.writable());
  EXPECT_EQ(c.data<float>()[23], 23.0f);
}

TEST(Convert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
  // 1 + 3*2^-8 is halfway, odd below: rounds up.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));  // signalling NaN stays NaN
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(INFINITY)), INFINITY);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-INFINITY)), -INFINITY);
}

TEST(Convert, F16EdgeCases) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to 65536: rounds to even = infinity
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e-8f), 0x0000);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie: to even (zero)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp: tie to even (2)
  EXPECT_EQ(f16_to_f32(0xfc00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  // Every f16 value round-trips exactly.
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(Convert, F8E4M3) {
  EXPECT_EQ(f8e4m3_to_f32(0x38), 1.0f);    // exponent 7, mantissa 0
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);  // largest finite
  EXPECT_EQ(f8e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
  EXPECT_EQ(f8e4m3_to_f32(0x00), 0.0f);
}

// Every vectorised variant equals the scalar twin bit for bit, on awkward lengths.
class ConvertVariants : public ::testing::TestWithParam<IsaLevel> {
 protected:
  void SetUp() override {
    if (GetParam() == IsaLevel::avx512 && !cpu_detected().avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
    if (GetParam() == IsaLevel::avx2 && !cpu_detected().avx2) GTEST_SKIP() << "no AVX2 on this CPU";
    previous_ = set_cpu_cap(GetParam());
  }
  void TearDown() override { set_cpu_cap(IsaLevel::avx512); }
  IsaLevel previous_{};
};

TEST_P(ConvertVariants, MatchScalar) {
  for (size_t n : {1u, 7u, 15u, 16u, 17u, 33u, 1000u, 1023u}) {
    std::vector<float> src = test::random_floats(n, n, -70000.0f, 70000.0f);
    src[0] = NAN;
    if (n > 2) src[1] = INFINITY, src[2] = from_bits(0x3f808000u);
    if (n > 3) src[3] = 1e-6f;
    std::vector<uint16_t> got(n), want(n);
    convert_f32_to_bf16(src.data(), got.data(), n);
    scalar::convert_f32_to_bf16(src.data(), want.data(), n);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(src[i])) {
        EXPECT_TRUE(std::isnan(bf16_to_f32(got[i])));
        continue;
      }
      ASSERT_EQ(got[i], want[i]) << "bf16 i=" << i << " n=" << n;
    }
    convert_f32_to_f16(src.data(), got.data(), n);
    scalar::convert_f32_to_f16(src.data(), want.data(), n);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(src[i])) {
        EXPECT_TRUE(std::isnan(f16_to_f32(got[i])));
        continue;
      }
      ASSERT_EQ(got[i], want[i]) << "f16 i=" << i << " n=" << n << " x=" << src[i];
    }
    std::vector<float> back(n), back_ref(n);
    convert_f16_to_f32(want.data(), back.data(), n);
    scalar::convert_f16_to_f32(want.data(), back_ref.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(bits_of(back[i]), bits_of(back_ref[i]));
    scalar::convert_f32_to_bf16(src.data(), want.data(), n);
    convert_bf16_to_f32(want.data(), back.data(), n);
    scalar::convert_bf16_to_f32(want.data(), back_ref.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(bits_of(back[i]), bits_of(back_ref[i]));
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, ConvertVariants, ::testing::Values(IsaLevel::scalar, IsaLevel::avx2, IsaLevel::avx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(Tensor, ToConvertsBetweenFloatTypes) {
  std::vector<float> v = test::random_floats(37, 5);
  Tensor t = Tensor::from_f32({37}, v);
  Tensor b = t.to(DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  Tensor back = b.to(DType::f32);
  for (int i = 0; i < 37; ++i) EXPECT_NEAR(back.data<float>()[i], v[static_cast<size_t>(i)], 1e-2);
  Tensor h = b.to(DType::f16);  // bf16 -> f16 through f32
  EXPECT_EQ(h.dtype(), DType::f16);
  EXPECT_EQ(t.to(DType::f32).data<float>(), t.data<float>());  // same dtype shares storage
  Tensor i = Tensor::zeros(DType::i64, {3});
  EXPECT_THROW(i.to(DType::f32), Error);
}

}  // namespace
}  // namespace flux
