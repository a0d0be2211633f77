// Flash-style attention (f32 and bf16 products) and RoPE against their reference twins, every ISA, awkward sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
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

// The bf16 path: where the CPU (as capped) has AVX512_BF16, against its twin (Q, K, V, P rounded to bf16 the
// same way: tight) and the f32 reference (loose, printed); below that, bit-identical to the f32 kernel.
// Lengths straddle the tiles (64 keys, 512-key softmax blocks, 6-row micro-tiles, 96-row tasks).
void check_attention_bf16(kernels::AttentionParams p) {
  const size_t nq = size_t(p.n_heads * p.len_q * p.head_dim), nk = size_t(p.n_heads * p.len_k * p.head_dim);
  const auto q = random_floats(nq, 11, -3.0f, 3.0f), k = random_floats(nk, 12), v = random_floats(nk, 13);
  std::vector<float> twin(nq), exact(nq), f32(nq), got(nq);
  p.bf16 = false;
  kernels::reference::attention(p, q.data(), k.data(), v.data(), exact.data());
  kernels::reference::attention_bf16(p, q.data(), k.data(), v.data(), twin.data());
  const double twin_vs_exact = compare(twin.data(), exact.data(), nq).max_rel;
  for_each_isa([&](IsaLevel) {
    p.bf16 = false;
    kernels::attention(p, q.data(), k.data(), v.data(), f32.data());
    p.bf16 = true;
    std::fill(got.begin(), got.end(), NAN);
    kernels::attention(p, q.data(), k.data(), v.data(), got.data());
    const std::string shape = "H " + std::to_string(p.n_heads) + " Lq " + std::to_string(p.len_q) + " Lk " +
                              std::to_string(p.len_k) + " D " + std::to_string(p.head_dim);
    if (!cpu_features().avx512_bf16) {
      EXPECT_EQ(std::memcmp(got.data(), f32.data(), nq * sizeof(float)), 0) << shape << ": not the f32 path";
      return;
    }
    const Diff vs_twin = compare(got.data(), twin.data(), nq), vs_exact = compare(got.data(), exact.data(), nq);
    std::printf(
        "  bf16 attention %s: vs twin max_rel %.2e rms_rel %.2e; vs f32 reference max_rel %.2e rms_rel %.2e "
        "(twin vs f32 reference %.2e)\n",
        shape.c_str(), vs_twin.max_rel, vs_twin.rms_rel, vs_exact.max_rel, vs_exact.rms_rel, twin_vs_exact);
    // Twin and kernel round the same values; they differ by f32 sums and the odd bf16 rounding flipped by
    // them (measured max_rel <= 2e-4, rms_rel <= 4e-5); against f32 the rounding shows (3e-3 rms).
    EXPECT_LE(vs_twin.max_rel, 1e-3) << shape;
    EXPECT_LE(vs_twin.rms_rel, 1e-4) << shape;
    EXPECT_LE(vs_exact.max_rel, 2e-2) << shape;
    EXPECT_GT(vs_exact.rms_rel, 10 * vs_twin.rms_rel) << shape << ": the twin check cannot tell bf16 from f32";
  });
}

TEST(AttentionBf16, MatchesTwinAcrossTiles) {
  check_attention_bf16({.n_heads = 3, .len_q = 37, .len_k = 300, .head_dim = 64, .scale = 0.125f});
  check_attention_bf16({.n_heads = 1, .len_q = 1, .len_k = 1, .head_dim = 128, .scale = 0.1f});
  check_attention_bf16({.n_heads = 2, .len_q = 200, .len_k = 517, .head_dim = 128, .scale = 1.0f / std::sqrt(128.0f)});
  check_attention_bf16({.n_heads = 1, .len_q = 97, .len_k = 65, .head_dim = 64, .scale = 0.3f});
  check_attention_bf16({.n_heads = 2, .len_q = 5, .len_k = 257, .head_dim = 128, .scale = 0.05f});
  check_attention_bf16({.n_heads = 1, .len_q = 30, .len_k = 1100, .head_dim = 128, .scale = 0.1f});
}

// bf16 asked where it does not apply (mask, bias, head_dim not a multiple of 64, FLUX_ATTENTION_BF16=0): the
// f32 kernel's output, bit for bit, at every level.
TEST(AttentionBf16, FallsBackToF32) {
  const auto run = [](kernels::AttentionParams p, bool with_bias, const char* env) {
    const size_t nq = size_t(p.n_heads * p.len_q * p.head_dim), nk = size_t(p.n_heads * p.len_k * p.head_dim);
    const auto q = random_floats(nq, 21, -3.0f, 3.0f), k = random_floats(nk, 22), v = random_floats(nk, 23);
    const auto bias = random_floats(size_t(p.n_heads * p.len_q * p.len_k), 24);
    if (with_bias) p.bias = bias.data();
    std::vector<float> want(nq), got(nq);
    for_each_isa([&](IsaLevel) {
      p.bf16 = false;
      kernels::attention(p, q.data(), k.data(), v.data(), want.data());
      if (env) setenv("FLUX_ATTENTION_BF16", env, 1);
      p.bf16 = true;
      kernels::attention(p, q.data(), k.data(), v.data(), got.data());
      if (env) unsetenv("FLUX_ATTENTION_BF16");
      EXPECT_EQ(std::memcmp(got.data(), want.data(), nq * sizeof(float)), 0)
          << "causal " << p.causal << " bias " << with_bias << " D " << p.head_dim << " env " << (env ? env : "-");
    });
  };
  run({.n_heads = 2, .len_q = 70, .len_k = 70, .head_dim = 64, .scale = 0.125f, .causal = true}, false, nullptr);
  run({.n_heads = 2, .len_q = 33, .len_k = 33, .head_dim = 64, .scale = 1.0f}, true, nullptr);
  run({.n_heads = 2, .len_q = 33, .len_k = 40, .head_dim = 40, .scale = 0.2f}, false, nullptr);
  run({.n_heads = 2, .len_q = 33, .len_k = 40, .head_dim = 128, .scale = 0.2f}, false, "0");
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
