// matmul_f32 (in-house GEMM, every ISA) and kernels::Linear (oneDNN; f32, bf16, f16, f8_e4m3 and ggml
// block-quantized weights; prepacked and per-call weights, per-call in panels) against matmul_reference on
// awkward shapes.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "isa_levels.h"
#include "kernels/internal.h"
#include "kernels/matmul.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "test_util.h"

namespace flux::test {
namespace {

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  return compare(got.data(), want.data(), want.size()).max_rel;
}

struct Shape3 {
  int64_t m, k, n;
};

TEST(MatmulF32, MatchesReferenceOnAwkwardShapes) {
  // 200 x 300 x 531 crosses the row tile (192), the k block (256) and the column tile (512).
  for (Shape3 s : {Shape3{1, 1, 1}, Shape3{13, 37, 45}, Shape3{7, 300, 33}, Shape3{200, 300, 531}}) {
    const auto x = random_floats(size_t(s.m * s.k), 1), w = random_floats(size_t(s.n * s.k), 2);
    const auto bias = random_floats(size_t(s.n), 3);
    std::vector<float> want(size_t(s.m * s.n)), got(want.size());
    kernels::matmul_reference(x.data(), w.data(), bias.data(), want.data(), s.m, s.k, s.n);
    for_each_isa([&](IsaLevel) {
      std::fill(got.begin(), got.end(), NAN);
      kernels::matmul_f32(x.data(), w.data(), bias.data(), got.data(), s.m, s.k, s.n);
      EXPECT_LE(rel(got, want), 1e-5) << s.m << "x" << s.k << "x" << s.n;
    });
  }
}

// A weight tensor [n, k] of `dtype` holding random values, and those values as f32 (for a quantized dtype:
// random values quantized as sd.cpp does, and their exact dequantization).
Tensor make_weight(DType dtype, int64_t n, int64_t k, std::vector<float>& as_f32) {
  const auto v = random_floats(size_t(n * k), 42, -1.0f, 1.0f);
  if (is_quantized(dtype)) {
    const auto ones = unit_importance(k);
    Tensor w = quantize(Tensor::from_f32({n, k}, v), dtype, ones.data());
    const Tensor f = w.to(DType::f32);
    as_f32.assign(f.data<float>(), f.data<float>() + f.numel());
    return w;
  }
  Tensor w = Tensor::empty(dtype, {n, k});
  as_f32.resize(v.size());
  if (dtype == DType::f8_e4m3) {
    auto* p = static_cast<uint8_t*>(w.raw_mut());
    for (size_t i = 0; i < v.size(); ++i) {
      uint8_t b = static_cast<uint8_t>((i * 37 + 11) % 256);
      if ((b & 0x7f) == 0x7f) b = 0x3c;  // 0x7f / 0xff are NaN in e4m3fn
      p[i] = b;
    }
  } else {
    convert_from_f32(v.data(), dtype, w.raw_mut(), v.size());
  }
  convert_to_f32(dtype, w.raw(), as_f32.data(), v.size());
  return w;
}

std::vector<float> round_bf16(std::vector<float> v) {
  for (float& f : v) f = bf16_to_f32(f32_to_bf16(f));
  return v;
}

void check_linear(DType dtype, kernels::WeightMode mode, int64_t n = 37, int64_t k = 53) {
  std::vector<float> w32;
  const Tensor w = make_weight(dtype, n, k, w32);
  const auto bias_v = random_floats(size_t(n), 5);
  const Tensor bias = Tensor::from_f32({n}, bias_v);
  for_each_isa([&](IsaLevel) {
    const kernels::Linear lin(w, bias, mode);
    ASSERT_TRUE(lin.defined());
    EXPECT_EQ(lin.in_features(), k);
    EXPECT_EQ(lin.out_features(), n);
    const size_t compute_size = dtype_size(dtype == DType::f32 ? DType::f32 : kernels::linear_compute_dtype());
    if (mode == kernels::WeightMode::prepacked) {
      EXPECT_GE(lin.packed_bytes(), size_t(n * k) * compute_size);
    } else {
      EXPECT_EQ(lin.packed_bytes(), 0u);
    }
    // bf16 compute rounds the weight (if wider) and the activations to bf16; the reference does the same.
    const bool bf16_compute = dtype != DType::f32 && kernels::linear_compute_dtype() == DType::bf16;
    const std::vector<float> w_eff = bf16_compute ? round_bf16(w32) : w32;
    for (int64_t m : {1, 5, 19, 5}) {  // a repeated M reuses its cached primitive
      const auto x = random_floats(size_t(m * k), uint64_t(m));
      const std::vector<float> x_eff = bf16_compute ? round_bf16(x) : x;
      std::vector<float> want(size_t(m * n)), got(want.size(), NAN);
      kernels::matmul_reference(x_eff.data(), w_eff.data(), bias_v.data(), want.data(), m, k, n);
      lin.forward(x.data(), m, got.data());
      EXPECT_LE(rel(got, want), 1e-5) << dtype_name(dtype) << " m " << m;
    }
  });
}

// Both product types for 16-bit and quantized weights, whichever this CPU's probe prefers.
void check_linear_both(DType dtype, kernels::WeightMode mode, int64_t n = 37, int64_t k = 53) {
  for (int force : {0, 1}) {
    SCOPED_TRACE(force ? "bf16 products" : "f32 products");
    kernels::detail::force_bf16_products(force);
    check_linear(dtype, mode, n, k);
  }
  kernels::detail::force_bf16_products(-1);
}

const DType kBlockTypes[] = {DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                             DType::q2_K, DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K};

// K: 3 blocks of the legacy types (96), 2 super-blocks of the k-quants (512).
int64_t quantized_k(DType dtype) { return dtype_block_size(dtype) == 32 ? 96 : 512; }

TEST(Linear, F32Prepacked) { check_linear(DType::f32, kernels::WeightMode::prepacked); }
TEST(Linear, F32PerCall) { check_linear(DType::f32, kernels::WeightMode::per_call); }
TEST(Linear, Bf16Prepacked) { check_linear_both(DType::bf16, kernels::WeightMode::prepacked); }
TEST(Linear, Bf16PerCall) { check_linear_both(DType::bf16, kernels::WeightMode::per_call); }
TEST(Linear, F16Prepacked) { check_linear_both(DType::f16, kernels::WeightMode::prepacked); }
TEST(Linear, F16PerCall) { check_linear_both(DType::f16, kernels::WeightMode::per_call); }
TEST(Linear, F8Prepacked) { check_linear_both(DType::f8_e4m3, kernels::WeightMode::prepacked); }
TEST(Linear, F8PerCall) { check_linear_both(DType::f8_e4m3, kernels::WeightMode::per_call); }

// A quantized weight equals matmul_reference on its dequantization, in both modes and both product types.
TEST(Linear, QuantizedPrepacked) {
  for (DType d : kBlockTypes) {
    SCOPED_TRACE(dtype_name(d));
    check_linear_both(d, kernels::WeightMode::prepacked, 37, quantized_k(d));
  }
}
TEST(Linear, QuantizedPerCall) {
  for (DType d : kBlockTypes) {
    SCOPED_TRACE(dtype_name(d));
    check_linear_both(d, kernels::WeightMode::per_call, 37, quantized_k(d));
  }
}

// per_call mode with panels of 64 output features: 150 = 64 + 64 + a 22-wide tail, each panel's product
// writing its columns of y (with its slice of the bias).
TEST(Linear, PerCallPanelsCoverEveryColumn) {
  kernels::detail::set_linear_panel_bytes(1);
  for (DType d : {DType::f32, DType::bf16, DType::f16, DType::q8_0, DType::q4_K, DType::q6_K}) {
    SCOPED_TRACE(dtype_name(d));
    const int64_t k = is_quantized(d) ? quantized_k(d) : 53;
    if (d == DType::f32) {
      check_linear(d, kernels::WeightMode::per_call, 150, k);
    } else {
      check_linear_both(d, kernels::WeightMode::per_call, 150, k);
    }
  }
  kernels::detail::set_linear_panel_bytes(0);
}

TEST(Linear, ManyDistinctRowCounts) {
  // More distinct M than the primitive cache keeps: evicted sizes must still compute correctly.
  const int64_t n = 9, k = 11;
  const auto wv = random_floats(size_t(n * k), 12);
  const kernels::Linear lin(Tensor::from_f32({n, k}, wv), Tensor());
  for (int64_t m = 1; m <= 40; m += (m % 3 == 0 ? 1 : 2)) {
    const auto x = random_floats(size_t(m * k), uint64_t(m) + 100);
    std::vector<float> want(size_t(m * n)), got(want.size(), NAN);
    kernels::matmul_reference(x.data(), wv.data(), nullptr, want.data(), m, k, n);
    lin.forward(x.data(), m, got.data());
    EXPECT_LE(rel(got, want), 1e-5) << "m " << m;
  }
}

TEST(Linear, TensorForwardKeepsLeadingDimsAndNoBias) {
  const int64_t n = 20, k = 24;
  const auto wv = random_floats(size_t(n * k), 8);
  const kernels::Linear lin(Tensor::from_f32({n, k}, wv), Tensor());
  const auto xv = random_floats(size_t(2 * 3 * k), 9);
  const Tensor y = lin.forward(Tensor::from_f32({2, 3, k}, xv));
  ASSERT_EQ(y.shape(), Shape({2, 3, n}));
  std::vector<float> want(size_t(6 * n));
  kernels::matmul_reference(xv.data(), wv.data(), nullptr, want.data(), 6, k, n);
  EXPECT_LE(compare(y.data<float>(), want.data(), want.size()).max_rel, 1e-5);
}

TEST(Linear, ConcurrentCallsWithDistinctOutputs) {
  const int64_t n = 64, k = 96;
  std::vector<float> w32;
  const kernels::Linear lin(make_weight(DType::bf16, n, k, w32), Tensor(), kernels::WeightMode::per_call);
  std::vector<std::vector<float>> outs(2);
  std::vector<std::thread> threads;
  const auto x = random_floats(size_t(33 * k), 10);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      outs[size_t(t)].assign(size_t(33 * n), 0.0f);
      for (int rep = 0; rep < 5; ++rep) lin.forward(x.data(), 33, outs[size_t(t)].data());
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(outs[0], outs[1]);
  std::vector<float> single(size_t(33 * n));
  lin.forward(x.data(), 33, single.data());
  EXPECT_EQ(outs[0], single);
}

TEST(Linear, RejectsBadShapes) {
  EXPECT_THROW(kernels::Linear(Tensor::from_f32({4}, std::vector<float>(4, 1.0f)), Tensor()), Error);
  EXPECT_THROW(kernels::Linear(Tensor::zeros(DType::i32, {2, 2}), Tensor()), Error);
  EXPECT_THROW(kernels::Linear(Tensor::zeros(DType::f32, {3, 2}), Tensor::zeros(DType::f32, {2})), Error);
  const kernels::Linear lin(Tensor::zeros(DType::f32, {3, 2}), Tensor());
  EXPECT_THROW(lin.forward(Tensor::zeros(DType::f32, {5, 4})), Error);
  EXPECT_THROW(kernels::Linear().forward(Tensor::zeros(DType::f32, {1, 2})), Error);
}

}  // namespace
}  // namespace flux::test

namespace flux {
namespace {

TEST(Linear, DefaultWeightModeIsUsedWhenNoneIsGiven) {
  const Tensor w = Tensor::from_f32({5, 3}, test::random_floats(15, 9)).to(DType::bf16);
  const Tensor x = Tensor::from_f32({2, 3}, test::random_floats(6, 10));
  ASSERT_EQ(kernels::default_weight_mode(), kernels::WeightMode::prepacked);
  const kernels::Linear packed(w, Tensor());
  EXPECT_GT(packed.packed_bytes(), 0u);
  kernels::set_default_weight_mode(kernels::WeightMode::per_call);
  const kernels::Linear per_call(w, Tensor());
  kernels::set_default_weight_mode(kernels::WeightMode::prepacked);
  EXPECT_EQ(per_call.packed_bytes(), 0u);
  EXPECT_CLOSE(per_call.forward(x), packed.forward(x), 1e-6);
}

}  // namespace
}  // namespace flux
