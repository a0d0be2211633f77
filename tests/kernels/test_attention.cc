// Flash-style attention and RoPE against their reference twins, every ISA, awkward sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/error.h"
#include "isa_levels.h"
#include "kernels/attention.h"
#include "test_util.h"

namespace flux::test {
namespace {

void check_attention(kernels::AttentionParams p, bool with_bias) {
  const size_t nq = size_t(p.n_heads * p.len_q * p.head_dim), nk = size_t(p.n_heads * p.len_k * p.head_dim);
  // Spread-out scores (x3) so the softmax is far from uniform and the online rescaling matters.
  const auto q = random_floats(nq, 1, -3.0f, 3.0f), k = random_floats(nk, 2), v = random_floats(nk, 3);
  const auto bias = random_floats(size_t(p.n_heads * p.len_q * p.len_k), 4, -2.0f, 2.0f);
  if (with_bias) p.bias = bias.data();
  std::vector<float> want(nq), got(nq);
  kernels::reference::attention(p, q.data(), k.data(), v.data(), want.data());
  for_each_isa([&](IsaLevel) {
    std::fill(got.begin(), got.end(), NAN);
    kernels::attention(p, q.data(), k.data(), v.data(), got.data());
    EXPECT_LE(compare(got.data(), want.data(), nq).max_rel, 1e-5)
        << "H " << p.n_heads << " Lq " << p.len_q << " Lk " << p.len_k << " D " << p.head_dim;
  });
}

TEST(Attention, PlainAcrossKeyBlocks) {
  // len_k 300 crosses the 256-key block; head_dim 40 is no multiple of the vector width.
  check_attention({.n_heads = 3, .len_q = 37, .len_k = 300, .head_dim = 40, .scale = 1.0f / std::sqrt(40.0f)}, false);
  check_attention({.n_heads = 1, .len_q = 1, .len_k = 1, .head_dim = 3, .scale = 0.5f}, false);
}

TEST(Attention, CausalAcrossQueryBlocks) {
  check_attention({.n_heads = 2, .len_q = 300, .len_k = 300, .head_dim = 24, .scale = 0.2f, .causal = true}, false);
}

TEST(Attention, AdditiveBiasUnitScale) {
  check_attention({.n_heads = 4, .len_q = 29, .len_k = 29, .head_dim = 16, .scale = 1.0f}, true);
  check_attention({.n_heads = 2, .len_q = 77, .len_k = 77, .head_dim = 64, .scale = 0.125f, .causal = true}, true);
}

TEST(Attention, RejectsEmptyShapes) {
  float dummy = 0;
  EXPECT_THROW(
      kernels::attention({.n_heads = 0, .len_q = 1, .len_k = 1, .head_dim = 1}, &dummy, &dummy, &dummy, &dummy), Error);
}

TEST(Rope, AdjacentPairsMatchReference) {
  const int64_t heads = 3, len = 19, dim = 14;
  const auto x = random_floats(size_t(heads * len * dim), 5);
  std::vector<float> cos(size_t(len * dim / 2)), sin(cos.size());
  for (int64_t l = 0; l < len; ++l)
    for (int64_t j = 0; j < dim / 2; ++j) {
      const double angle = l / std::pow(10000.0, 2.0 * j / dim);
      cos[size_t(l * dim / 2 + j)] = float(std::cos(angle));
      sin[size_t(l * dim / 2 + j)] = float(std::sin(angle));
    }
  std::vector<float> want = x, got = x;
  kernels::reference::rope(want.data(), heads, len, dim, cos.data(), sin.data());
  kernels::rope(got.data(), heads, len, dim, cos.data(), sin.data());
  EXPECT_LE(compare(got.data(), want.data(), want.size()).max_rel, 1e-6);
  // Position 0 is the identity; position 1, pair 0 is a rotation by 1 radian.
  for (int64_t d = 0; d < dim; ++d) EXPECT_FLOAT_EQ(got[size_t(d)], x[size_t(d)]);
  const float x0 = x[size_t(dim)], x1 = x[size_t(dim + 1)];
  EXPECT_NEAR(got[size_t(dim)], std::cos(1.0) * x0 - std::sin(1.0) * x1, 1e-6);
  EXPECT_THROW(kernels::rope(got.data(), 1, 1, 3, cos.data(), sin.data()), Error);
}

}  // namespace
}  // namespace flux::test
