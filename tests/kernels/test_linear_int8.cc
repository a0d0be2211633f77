// kernels::Linear at Precision::int8 (linear_int8.h) against matmul_reference on the widened weight, within the
// bound the two roundings allow; prepacked and per_call bit for bit; every ISA level bit for bit; every stored
// dtype. The row kernels' AVX2 twins against their scalar twins. The precision API's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "isa_levels.h"
#include "kernels/internal.h"
#include "kernels/linear_int8.h"
#include "kernels/matmul.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "test_util.h"

namespace flux::test {
namespace {

using kernels::Precision;
using kernels::WeightMode;

// A [n, k] weight of `dtype` from random values in [-1, 1], and its values widened to f32 (what the int8
// quantizer starts from).
Tensor make_weight(DType dtype, int64_t n, int64_t k, std::vector<float>& as_f32) {
  const auto v = random_floats(size_t(n * k), 42);
  Tensor w;
  if (is_quantized(dtype)) {
    const auto ones = unit_importance(k);
    w = quantize(Tensor::from_f32({n, k}, v), dtype, ones.data());
  } else if (dtype == DType::f8_e4m3) {
    w = Tensor::empty(dtype, {n, k});
    auto* p = static_cast<uint8_t*>(w.raw_mut());
    for (size_t i = 0; i < v.size(); ++i) {
      uint8_t b = static_cast<uint8_t>((i * 37 + 11) % 256);
      if ((b & 0x7f) == 0x7f) b = 0x3c;  // 0x7f / 0xff are NaN in e4m3fn
      p[i] = b;
    }
  } else {
    w = Tensor::from_f32({n, k}, v).to(dtype);
  }
  const Tensor f = w.to(DType::f32);
  as_f32.assign(f.data<float>(), f.data<float>() + f.numel());
  return w;
}

float absmax(const float* v, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(v[i]));
  return m;
}

// |y - y_ref| allowed at (r, j). With sx = absmax(x_r) / 127 and sw = absmax(w_j) / w_max the roundings are
// x = x^ + ex, |ex| <= sx / 2 and w = w^ + ew, |ew| <= sw / 2, so
//   |sum x w - sum x^ w^| <= sum_k (|x| sw / 2 + sx / 2 |w| + sx sw / 4);
// plus f32 rounding: the epilogue (a few ulp of sum |x^ w^| and of the bias) and the reference's sum.
double bound(const float* x, const float* w, float bias, int64_t k, int w_max) {
  const double sx = absmax(x, k) / 127.0, sw = absmax(w, k) / w_max;
  double q = 0, mag = 0;
  for (int64_t i = 0; i < k; ++i) {
    q += std::fabs(x[i]) * sw / 2 + sx / 2 * std::fabs(w[i]) + sx * sw / 4;
    mag += std::fabs(x[i] * w[i]);
  }
  return q + 1e-6 * double(k + 8) * (mag + std::fabs(bias)) + 1e-30;
}

const DType kStored[] = {DType::f32,  DType::bf16, DType::f16,  DType::f8_e4m3, DType::q4_0, DType::q4_1,
                         DType::q5_0, DType::q5_1, DType::q8_0, DType::q2_K,    DType::q3_K, DType::q4_K,
                         DType::q5_K, DType::q6_K};

// K: odd for the float types; 3 blocks (legacy) or 2 super-blocks (k-quants) for the block types.
int64_t k_for(DType d) { return !is_quantized(d) ? 301 : dtype_block_size(d) == 32 ? 96 : 512; }

TEST(LinearInt8, WithinTheQuantizationBoundForEveryStoredForm) {
  kernels::detail::set_linear_panel_bytes(1);  // per_call panels of 64 features: 131 = 64 + 64 + 3
  const int64_t n = 131;
  for (DType d : kStored) {
    SCOPED_TRACE(dtype_name(d));
    const int64_t k = k_for(d);
    std::vector<float> w32;
    const Tensor w = make_weight(d, n, k, w32);
    const auto bias = random_floats(size_t(n), 5);
    for (int64_t m : {1, 7, 70, 300}) {
      SCOPED_TRACE(m);
      // Activations with a few outliers, as transformer activations have.
      auto x = random_floats(size_t(m * k), uint64_t(m) + 17, -2.0f, 2.0f);
      for (size_t i = 0; i < x.size(); i += 97) x[i] *= 20.0f;
      std::vector<float> want(size_t(m * n));
      kernels::matmul_reference(x.data(), w32.data(), bias.data(), want.data(), m, k, n);
      // The first result per weight range: every ISA level and mode with that range must give its bytes (the
      // range is 7 bits where the capped CPU lacks AVX512_VNNI, 8 bits with it, so those levels differ).
      std::map<int, std::vector<float>> first;
      for_each_isa([&](IsaLevel) {
        const int w_max = kernels::detail::int8_weight_max();
        for (WeightMode mode : {WeightMode::prepacked, WeightMode::per_call}) {
          const kernels::Linear lin(w, Tensor::from_f32({n}, bias), mode, Precision::int8);
          ASSERT_EQ(lin.compute_dtype(), DType::i8);
          std::vector<float> got(want.size(), NAN);
          lin.forward(x.data(), m, got.data());
          int over = 0;
          double worst = 0;
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t j = 0; j < n; ++j) {
              const double err = std::fabs(double(got[r * n + j]) - want[r * n + j]);
              const double b = bound(&x[r * k], &w32[j * k], bias[j], k, w_max);
              worst = std::max(worst, err / b);
              over += !(err <= b);
            }
          }
          EXPECT_EQ(over, 0) << "worst error / bound " << worst;
          auto [it, inserted] = first.emplace(w_max, got);
          if (!inserted) {
            EXPECT_EQ(std::memcmp(it->second.data(), got.data(), got.size() * sizeof(float)), 0)
                << (mode == WeightMode::prepacked ? "prepacked" : "per_call") << " differs from the first run";
          }
        }
      });
    }
  }
  kernels::detail::set_linear_panel_bytes(0);
}

// Every activation at its absmax (u8 255) against every weight at w_max: the products oneDNN sums in 16 bits
// without VNNI must not saturate, so y is exact.
TEST(LinearInt8, ExtremeCodesDoNotSaturate) {
  const int64_t n = 40, k = 1024, m = 3;
  const std::vector<float> w(size_t(n * k), 0.5f), x(size_t(m * k), 2.0f);
  for (WeightMode mode : {WeightMode::prepacked, WeightMode::per_call}) {
    const kernels::Linear lin(Tensor::from_f32({n, k}, w), Tensor(), mode, Precision::int8);
    std::vector<float> y(size_t(m * n));
    lin.forward(x.data(), m, y.data());
    for (float v : y) ASSERT_FLOAT_EQ(v, 1.0f * k);
  }
}

TEST(LinearInt8, ZeroRowsGiveTheBias) {
  const int64_t n = 5, k = 33, m = 2;
  std::vector<float> w(size_t(n * k), 0.0f);
  const auto bias = random_floats(size_t(n), 3);
  const kernels::Linear lin(Tensor::from_f32({n, k}, w), Tensor::from_f32({n}, bias), WeightMode::prepacked,
                            Precision::int8);
  const auto x = random_floats(size_t(m * k), 4);
  std::vector<float> y(size_t(m * n));
  lin.forward(x.data(), m, y.data());
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(y[r * n + j], bias[j]);
}

TEST(LinearInt8, NonFiniteWeightIsRefusedByRow) {
  std::vector<float> w(size_t(4 * 8), 1.0f);
  w[2 * 8 + 3] = NAN;
  EXPECT_THROW(
      {
        try {
          kernels::Linear lin(Tensor::from_f32({4, 8}, w), Tensor(), WeightMode::prepacked, Precision::int8);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
}

// The AVX2 row kernels give the scalar twins' bytes, including exact .5 ties and awkward lengths.
TEST(LinearInt8, RowKernelsMatchTheirScalarTwins) {
  if (!cpu_detected().avx2) GTEST_SKIP() << "no AVX2";
  namespace d = kernels::detail;
  for (int64_t len : {1, 31, 32, 33, 100, 301}) {
    auto x = random_floats(size_t(len), uint64_t(len), -3.0f, 3.0f);
    for (int64_t i = 0; i < len; i += 5) x[size_t(i)] = 0.5f + float(i % 7) - 3.0f;  // ties at inv = 1
    EXPECT_EQ(d::avx2::absmax(x.data(), len), d::scalar::absmax(x.data(), len));
    for (float inv : {1.0f, 127.0f / 3.0f}) {
      std::vector<uint8_t> a(static_cast<size_t>(len)), b(static_cast<size_t>(len));
      d::avx2::quantize_row_u8(x.data(), len, inv, a.data());
      d::scalar::quantize_row_u8(x.data(), len, inv, b.data());
      EXPECT_EQ(a, b) << len;
      std::vector<int8_t> c(static_cast<size_t>(len)), e(static_cast<size_t>(len));
      d::avx2::quantize_row_s8(x.data(), len, inv, c.data());
      d::scalar::quantize_row_s8(x.data(), len, inv, e.data());
      EXPECT_EQ(c, e) << len;
    }
    // Ties round to even: 0.5 -> 0 (u8 128), 2.5 -> 2 (u8 130), -0.5 -> 0, -1.5 -> -2 (u8 126).
    const float ties[] = {0.5f, 2.5f, -0.5f, -1.5f};
    uint8_t q[4];
    d::scalar::quantize_row_u8(ties, 4, 1.0f, q);
    EXPECT_EQ(q[0], 128);
    EXPECT_EQ(q[1], 130);
    EXPECT_EQ(q[2], 128);
    EXPECT_EQ(q[3], 126);
    std::vector<int32_t> acc(static_cast<size_t>(len)), comp(static_cast<size_t>(len));
    std::mt19937 rng(static_cast<uint32_t>(len));
    for (int64_t i = 0; i < len; ++i) {
      acc[size_t(i)] = int32_t(rng() % 2000001) - 1000000;
      comp[size_t(i)] = int32_t(rng() % 20001) - 10000;
    }
    const auto sw = random_floats(size_t(len), 9, 0.001f, 0.01f), bias = random_floats(size_t(len), 10);
    std::vector<float> ya(static_cast<size_t>(len)), yb(static_cast<size_t>(len));
    d::avx2::epilogue_row(acc.data(), len, 0.02f, sw.data(), comp.data(), bias.data(), ya.data());
    d::scalar::epilogue_row(acc.data(), len, 0.02f, sw.data(), comp.data(), bias.data(), yb.data());
    EXPECT_EQ(std::memcmp(ya.data(), yb.data(), ya.size() * 4), 0) << len;
  }
  std::vector<float> with_nan(40, 1.0f);
  with_nan[17] = NAN;
  EXPECT_TRUE(std::isnan(d::avx2::absmax(with_nan.data(), 40)));
  EXPECT_TRUE(std::isnan(d::scalar::absmax(with_nan.data(), 40)));
}

TEST(Precision, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(kernels::parse_precision("auto"), Precision::automatic);
  EXPECT_EQ(kernels::parse_precision("f32"), Precision::f32);
  EXPECT_EQ(kernels::parse_precision("bf16"), Precision::bf16);
  EXPECT_EQ(kernels::parse_precision("int8"), Precision::int8);
  EXPECT_THROW(kernels::parse_precision("fp8"), Error);
}

TEST(Precision, Bf16NamesTheMissingFeatureOrRuns) {
  const std::vector<float> w(size_t(16 * 32), 0.25f);
  if (cpu_features().avx512_bf16) {
    const kernels::Linear lin(Tensor::from_f32({16, 32}, w), Tensor(), WeightMode::prepacked, Precision::bf16);
    EXPECT_EQ(lin.compute_dtype(), DType::bf16);
    return;
  }
  try {
    kernels::Linear lin(Tensor::from_f32({16, 32}, w), Tensor(), WeightMode::prepacked, Precision::bf16);
    FAIL() << "bf16 products made without AVX512_BF16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("AVX512_BF16"), std::string::npos) << e.what();
  }
}

TEST(Precision, DefaultFollowsTheProcessSetting) {
  const std::vector<float> w(size_t(8 * 16), 0.25f);
  const Tensor wb = Tensor::from_f32({8, 16}, w).to(DType::bf16);
  kernels::set_default_precision(Precision::int8);
  EXPECT_EQ(kernels::Linear(wb, Tensor()).compute_dtype(), DType::i8);
  EXPECT_EQ(kernels::linear_compute_dtype(), DType::i8);
  kernels::set_default_precision(Precision::f32);
  EXPECT_EQ(kernels::Linear(wb, Tensor()).compute_dtype(), DType::f32);
  kernels::set_default_precision(Precision::automatic);
  EXPECT_EQ(kernels::Linear(wb, Tensor()).compute_dtype(), kernels::linear_compute_dtype());
}

}  // namespace
}  // namespace flux::test
