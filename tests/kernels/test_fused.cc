// The fused passes around FLUX's products, at every ISA level, against their unfused twins on awkward sizes:
// layer_norm_modulate (LayerNorm + (1 + scale) x + shift), add_gated_layer_norm_modulate (gated residual + the
// next pre-norm) and rms_norm_rope (QKNorm + RoPE writing attention's [heads, len, D] layout).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/error.h"
#include "isa_levels.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/norm.h"
#include "test_util.h"

namespace flux::test {
namespace {

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  return compare(got.data(), want.data(), want.size()).max_rel;
}

TEST(Fused, LayerNormModulateIsLayerNormThenModulate) {
  for (int64_t dim : {1, 3, 7, 17, 31, 3077}) {
    const int64_t rows = 11;
    const size_t n = static_cast<size_t>(rows * dim);
    const auto x = random_floats(n, 31, -3.0f, 5.0f);  // non-zero mean
    const auto shift = random_floats(static_cast<size_t>(dim), 32), scale = random_floats(static_cast<size_t>(dim), 33);
    std::vector<float> want(n), got(n), unfused(n);
    kernels::reference::layer_norm_modulate(x.data(), want.data(), rows, dim, shift.data(), scale.data(), 1e-6f);
    for_each_isa([&](IsaLevel) {
      kernels::layer_norm_modulate(x.data(), got.data(), rows, dim, shift.data(), scale.data(), 1e-6f);
      EXPECT_LE(rel(got, want), 2e-6) << "dim " << dim;
      // The same operations as the two unfused kernels at this ISA: the same bits.
      kernels::layer_norm(x.data(), unfused.data(), rows, dim, nullptr, nullptr, 1e-6f);
      kernels::modulate(unfused.data(), unfused.data(), rows, dim, shift.data(), scale.data());
      EXPECT_EQ(got, unfused) << "dim " << dim;
      std::vector<float> inplace = x;  // y == x is allowed
      kernels::layer_norm_modulate(inplace.data(), inplace.data(), rows, dim, shift.data(), scale.data(), 1e-6f);
      EXPECT_EQ(inplace, got);
    });
  }
}

TEST(Fused, AddGatedLayerNormModulateIsResidualThenNorm) {
  for (int64_t dim : {1, 5, 19, 33, 3077}) {
    const int64_t rows = 9;
    const size_t n = static_cast<size_t>(rows * dim);
    const auto x0 = random_floats(n, 41, -2.0f, 4.0f), r = random_floats(n, 42, -3.0f, 3.0f);
    const auto gate = random_floats(static_cast<size_t>(dim), 43);
    const auto shift = random_floats(static_cast<size_t>(dim), 44), scale = random_floats(static_cast<size_t>(dim), 45);
    std::vector<float> want_x = x0, want_y(n);
    kernels::reference::add_gated_layer_norm_modulate(want_x.data(), r.data(), gate.data(), want_y.data(), rows, dim,
                                                      shift.data(), scale.data(), 1e-6f);
    for_each_isa([&](IsaLevel) {
      std::vector<float> x = x0, y(n);
      kernels::add_gated_layer_norm_modulate(x.data(), r.data(), gate.data(), y.data(), rows, dim, shift.data(),
                                             scale.data(), 1e-6f);
      EXPECT_LE(rel(x, want_x), 1e-6) << "dim " << dim;  // the residual stream is updated too
      EXPECT_LE(rel(y, want_y), 2e-6) << "dim " << dim;
      std::vector<float> ux = x0, uy(n);  // unfused, this ISA: the same bits
      kernels::add_gated(ux.data(), r.data(), gate.data(), rows, dim);
      kernels::layer_norm_modulate(ux.data(), uy.data(), rows, dim, shift.data(), scale.data(), 1e-6f);
      EXPECT_EQ(x, ux) << "dim " << dim;
      EXPECT_EQ(y, uy) << "dim " << dim;
    });
  }
}

TEST(Fused, RmsNormRopeWritesHeadsLikeRmsNormThenRope) {
  // head_dim even but not a multiple of 8 or 16 (tails), len past the threading grain, and y a slice of a longer
  // sequence (rows [offset, offset + len) of ld_y): the rows outside must stay untouched.
  for (int64_t head_dim : {2, 6, 18, 34, 128}) {
    const int64_t heads = 3, len = 37, ld_x = heads * head_dim * 3 + 5, ld_y = len + 4, offset = 3;
    const size_t half = static_cast<size_t>(head_dim / 2);
    const auto x = random_floats(static_cast<size_t>(len * ld_x), 51, -3.0f, 3.0f);
    const auto gamma = random_floats(static_cast<size_t>(head_dim), 52, 0.5f, 1.5f);
    std::vector<float> angle = random_floats(static_cast<size_t>(len) * half, 53, -3.0f, 3.0f), cos(angle.size()),
                       sin(angle.size());
    for (size_t i = 0; i < angle.size(); ++i) {
      cos[i] = std::cos(angle[i]);
      sin[i] = std::sin(angle[i]);
    }
    const size_t n_y = static_cast<size_t>(heads * ld_y * head_dim);
    std::vector<float> want(n_y, 7.0f);
    kernels::reference::rms_norm_rope(x.data(), ld_x, len, heads, head_dim, gamma.data(), 1e-6f, cos.data(),
                                      sin.data(), want.data() + offset * head_dim, ld_y);
    // The plain twin is the composition it claims to be.
    std::vector<float> plain(static_cast<size_t>(heads * len * head_dim));
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t l = 0; l < len; ++l) {
        kernels::reference::rms_norm(x.data() + l * ld_x + h * head_dim, plain.data() + (h * len + l) * head_dim, 1,
                                     head_dim, gamma.data(), 1e-6f);
      }
    kernels::reference::rope(plain.data(), heads, len, head_dim, cos.data(), sin.data());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < len * head_dim; ++i)
        ASSERT_EQ(want[static_cast<size_t>((h * ld_y + offset) * head_dim + i)],
                  plain[static_cast<size_t>(h * len * head_dim + i)]);
    for_each_isa([&](IsaLevel) {
      std::vector<float> got(n_y, 7.0f);
      kernels::rms_norm_rope(x.data(), ld_x, len, heads, head_dim, gamma.data(), 1e-6f, cos.data(), sin.data(),
                             got.data() + offset * head_dim, ld_y);
      EXPECT_LE(rel(got, want), 2e-6) << "head_dim " << head_dim;
      size_t untouched = 0;
      for (float v : got) untouched += v == 7.0f;
      EXPECT_EQ(untouched, static_cast<size_t>(heads * (ld_y - len) * head_dim)) << "head_dim " << head_dim;
    });
  }
  EXPECT_THROW(kernels::rms_norm_rope(nullptr, 3, 1, 1, 3, nullptr, 1e-6f, nullptr, nullptr, nullptr, 1), Error);
}

}  // namespace
}  // namespace flux::test
