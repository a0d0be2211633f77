// Activations, arithmetic and normalisations: each ISA variant against the reference:: twin on awkward
// lengths (not multiples of 8 or 16) and random non-zero data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.h"
#include "isa_levels.h"
#include "kernels/activation.h"
#include "kernels/norm.h"
#include "test_util.h"

namespace flux::test {
namespace {

// max_i |got - want| / max(|want|, floor): a per-element relative error.
double max_elem_rel(const std::vector<float>& got, const std::vector<float>& want, double floor = 1e-30) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]) / std::max<double>(std::fabs(want[i]), floor);
    worst = std::max(worst, std::isnan(e) ? INFINITY : e);
  }
  return worst;
}

std::vector<float> activation_inputs(size_t n) {
  std::vector<float> x = random_floats(n, 7, -12.0f, 12.0f);
  const float special[] = {0.0f, -0.0f, 1e-7f, -1e-7f, 1e-3f, -1e-3f, 30.0f, -30.0f, 85.0f, -85.0f};
  for (size_t i = 0; i < std::size(special) && i * 3 < n; ++i) x[i * 3] = special[i];
  return x;
}

// The manifest's measure: max|a - b| / max|b|.
double rel(const std::vector<float>& got, const std::vector<float>& want) {
  return compare(got.data(), want.data(), want.size()).max_rel;
}

using Unary = void (*)(const float*, float*, int64_t);

void check_unary(Unary fast, Unary ref, double tol) {
  for (int64_t n : {1, 7, 15, 17, 33, 1001, 40000}) {
    const std::vector<float> x = activation_inputs(static_cast<size_t>(n));
    std::vector<float> want(x.size()), got(x.size());
    ref(x.data(), want.data(), n);
    for_each_isa([&](IsaLevel) {
      fast(x.data(), got.data(), n);
      // ~1e-6 relative where the value matters; deep in the negative tail (|y| < 1e-4, exp of an argument near
      // 50) float rounding of the argument alone costs a few 1e-6.
      EXPECT_LE(max_elem_rel(got, want, 1e-4), tol) << "n = " << n;
      EXPECT_LE(max_elem_rel(got, want), 3e-5) << "n = " << n;
      std::vector<float> inplace = x;  // y == x is allowed
      fast(inplace.data(), inplace.data(), n);
      EXPECT_EQ(inplace, got);
    });
  }
}

TEST(Activation, GeluTanhMatchesFormula) { check_unary(kernels::gelu_tanh, kernels::reference::gelu_tanh, 2e-6); }
TEST(Activation, SiluMatchesFormula) { check_unary(kernels::silu, kernels::reference::silu, 2e-6); }
TEST(Activation, QuickGeluMatchesFormula) { check_unary(kernels::quick_gelu, kernels::reference::quick_gelu, 2e-6); }

TEST(Activation, GeluKnownValues) {
  const float x[3] = {0.0f, 1.0f, -2.0f};
  float y[3];
  kernels::reference::gelu_tanh(x, y, 3);
  EXPECT_FLOAT_EQ(y[0], 0.0f);
  EXPECT_NEAR(y[1], 0.8411920f, 1e-6);  // torch.nn.functional.gelu(1, approximate="tanh")
  EXPECT_NEAR(y[2], -0.0454023f, 1e-6);
}

TEST(Activation, SoftmaxRows) {
  for (int64_t dim : {1, 5, 17, 1001}) {
    const int64_t rows = 9;
    std::vector<float> x = random_floats(static_cast<size_t>(rows * dim), 3, -20.0f, 20.0f);
    x[0] = 80.0f;  // large values must not overflow
    std::vector<float> want = x;
    kernels::reference::softmax(want.data(), rows, dim);
    for_each_isa([&](IsaLevel) {
      std::vector<float> got = x;
      kernels::softmax(got.data(), rows, dim);
      // exp of an argument near -40 carries ~40 ulp of the argument's rounding: per element ~3e-6.
      EXPECT_LE(max_elem_rel(got, want, 1e-20), 5e-6) << "dim " << dim;
      EXPECT_LE(rel(got, want), 1e-6) << "dim " << dim;
      double row0 = 0;
      for (int64_t d = 0; d < dim; ++d) row0 += got[static_cast<size_t>(d)];
      EXPECT_NEAR(row0, 1.0, 1e-5);
    });
  }
}

TEST(Arithmetic, AddMulModulateGated) {
  const int64_t rows = 13, dim = 3077;
  const size_t n = static_cast<size_t>(rows * dim);
  const auto a = random_floats(n, 1), b = random_floats(n, 2);
  const auto shift = random_floats(dim, 3), scale = random_floats(dim, 4), gate = random_floats(dim, 5);
  std::vector<float> want(n), got(n);
  for_each_isa([&](IsaLevel) {
    kernels::reference::add(a.data(), b.data(), want.data(), int64_t(n));
    kernels::add(a.data(), b.data(), got.data(), int64_t(n));
    EXPECT_EQ(got, want);
    kernels::reference::mul(a.data(), b.data(), want.data(), int64_t(n));
    kernels::mul(a.data(), b.data(), got.data(), int64_t(n));
    EXPECT_EQ(got, want);
    kernels::reference::modulate(a.data(), want.data(), rows, dim, shift.data(), scale.data());
    kernels::modulate(a.data(), got.data(), rows, dim, shift.data(), scale.data());
    EXPECT_LE(rel(got, want), 1e-6);  // fused multiply-add: per element only relative to the row scale
    for (const float* g : {gate.data(), static_cast<const float*>(nullptr)}) {
      want = a;
      got = a;
      kernels::reference::add_gated(want.data(), b.data(), g, rows, dim);
      kernels::add_gated(got.data(), b.data(), g, rows, dim);
      EXPECT_LE(rel(got, want), 1e-6);
    }
  });
}

TEST(Norm, LayerNormAndRmsNorm) {
  for (int64_t dim : {1, 3, 31, 3077}) {
    const int64_t rows = 11;
    const size_t n = static_cast<size_t>(rows * dim);
    const auto x = random_floats(n, 11, -3.0f, 5.0f);  // non-zero mean
    const auto gamma = random_floats(dim, 12), beta = random_floats(dim, 13);
    std::vector<float> want(n), got(n);
    for_each_isa([&](IsaLevel) {
      for (bool affine : {false, true}) {
        const float* g = affine ? gamma.data() : nullptr;
        const float* bt = affine ? beta.data() : nullptr;
        kernels::reference::layer_norm(x.data(), want.data(), rows, dim, g, bt, 1e-6f);
        kernels::layer_norm(x.data(), got.data(), rows, dim, g, bt, 1e-6f);
        EXPECT_LE(rel(got, want), 2e-6);
        kernels::reference::rms_norm(x.data(), want.data(), rows, dim, g, 1e-6f);
        got = x;
        kernels::rms_norm(got.data(), got.data(), rows, dim, g, 1e-6f);  // in place
        EXPECT_LE(rel(got, want), 2e-6);
      }
    });
  }
}

TEST(Norm, GroupNorm) {
  const int64_t channels = 12, groups = 4, spatial = 37 * 29;
  const size_t n = static_cast<size_t>(channels * spatial);
  const auto x = random_floats(n, 21, -2.0f, 6.0f);
  const auto gamma = random_floats(channels, 22), beta = random_floats(channels, 23);
  std::vector<float> want(n), got(n);
  kernels::reference::group_norm(x.data(), want.data(), channels, spatial, groups, gamma.data(), beta.data(), 1e-6f);
  for_each_isa([&](IsaLevel) {
    got = x;
    kernels::group_norm(got.data(), got.data(), channels, spatial, groups, gamma.data(), beta.data(), 1e-6f);
    EXPECT_LE(rel(got, want), 2e-6);
  });
  EXPECT_THROW(kernels::group_norm(x.data(), got.data(), channels, spatial, 5, nullptr, nullptr, 1e-6f), Error);
}

}  // namespace
}  // namespace flux::test
