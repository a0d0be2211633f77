// The stored-form bf16 GEMM (src/kernels/gemm_stored.h), at every ISA level:
//  - each dequantized tile is bit for bit the bf16 the existing conversions give (dequantize_row_bf16 for the
//    ggml block types and bf16, convert_to_f32 + convert_f32_to_bf16 for f16, f8_e4m3 and f32), in the pair
//    layout, with zero padding past N;
//  - the product agrees with a plain reference on the same bf16-rounded operands (computed in double): the
//    products of two bf16 values are exact in f32, so the kernel's only error is the rounding of its f32 sum of
//    K products plus the bias, in whatever order. Any order of a sum of K + 1 terms is within
//    gamma_K * sum |terms| of the exact sum (Higham, Accuracy and Stability, (4.4)), gamma_K = K u / (1 - K u),
//    u = 2^-24; the test allows (K + 2) u * sum |terms|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "isa_levels.h"
#include "kernels/gemm_stored.h"
#include "kernels/internal.h"
#include "kernels/matmul.h"
#include "tensor/convert.h"
#include "tensor/quant.h"
#include "tensor/quantize.h"
#include "test_util.h"

namespace flux::test {
namespace {

using kernels::detail::kStoredMaxRows;
using kernels::detail::kStoredNr;
using kernels::detail::kStoredTileUnits;
using kernels::detail::StoredBlocking;
using kernels::detail::StoredGemm;

const DType kStoredTypes[] = {DType::f32,  DType::bf16, DType::f16,  DType::f8_e4m3, DType::q4_0,
                              DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,    DType::q2_K,
                              DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K};

// A random [n, k] weight of `dtype` (quantized as sd.cpp does; f8 bytes cycling through every finite code).
// With `specials`, f16 weights also hold infinities, NaNs, signed zeros and subnormals, f8 weights NaNs.
Tensor make_weight(DType dtype, int64_t n, int64_t k, uint64_t seed, bool specials = false) {
  const auto v = random_floats(size_t(n * k), seed, -1.0f, 1.0f);
  const Tensor w32 = Tensor::from_f32({n, k}, v);
  if (is_quantized(dtype)) {
    const auto ones = unit_importance(k);
    return quantize(w32, dtype, ones.data());
  }
  if (dtype == DType::f8_e4m3) {
    Tensor w = Tensor::empty(dtype, {n, k});
    auto* p = static_cast<uint8_t*>(w.raw_mut());
    for (size_t i = 0; i < v.size(); ++i) {
      uint8_t b = static_cast<uint8_t>((i * 37 + 11 + seed) % 256);
      if ((b & 0x7f) == 0x7f && !specials) b = 0x3c;  // 0x7f / 0xff are NaN in e4m3fn
      p[i] = b;
    }
    return w;
  }
  Tensor w = w32.to(dtype);
  if (dtype == DType::f16 && specials) {
    const uint16_t bits[] = {0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe01, 0x7bff, 0x0400, 0x8000};
    auto* p = static_cast<uint16_t*>(w.raw_mut());
    for (size_t i = 3; i < v.size(); i += 7) p[i] = bits[i % std::size(bits)];
  }
  return w;
}

// Row r of w as bf16 through the conversions a bf16 product of the widened weight uses (linear_pack.cc's
// widen_span), at the current ISA level.
std::vector<uint16_t> reference_row_bf16(const Tensor& w, int64_t r) {
  const int64_t k = w.dim(1);
  const auto* src = static_cast<const uint8_t*>(w.raw()) + size_t(r) * dtype_nbytes(w.dtype(), k);
  std::vector<uint16_t> out(static_cast<size_t>(k));
  if (is_quantized(w.dtype()) || w.dtype() == DType::bf16) {
    dequantize_row_bf16(w.dtype(), src, out.data(), k);
  } else {
    std::vector<float> f(static_cast<size_t>(k));
    convert_to_f32(w.dtype(), src, f.data(), f.size());
    convert_f32_to_bf16(f.data(), out.data(), f.size());
  }
  return out;
}

// K values: one tile, a tile and a part (of the wide blocking's 1024), several tiles; each a multiple of 32 and
// of the block size.
std::vector<int64_t> awkward_k(DType dtype) {
  if (dtype_block_size(dtype) == 256) return {256, 768, 1280};
  return {64, 96, 1184};
}

StoredGemm gemm_of(const Tensor& w) {
  StoredGemm g;
  g.dtype = w.dtype();
  g.w = w.raw();
  g.n = w.dim(0);
  g.k = w.dim(1);
  return g;
}

// The tiles: 64 features, K in near-equal blocks of at most 4096 (whole 256-element groups, or all of K), no
// more blocks than needed, every tile within kStoredTileUnits.
TEST(GemmStored, Blocking) {
  for (int64_t k : {int64_t{32}, int64_t{1184}, int64_t{4096}, int64_t{4128}, int64_t{10240}, int64_t{15360}}) {
    const StoredBlocking b = kernels::detail::stored_blocking(k);
    SCOPED_TRACE("k " + std::to_string(k));
    EXPECT_EQ(b.nc, kStoredNr);
    EXPECT_LE(b.kc, 4096);
    EXPECT_TRUE(b.kc == k || b.kc % 256 == 0) << b.kc;
    EXPECT_EQ((k + b.kc - 1) / b.kc, (k + 4095) / 4096) << b.kc;
    EXPECT_LE(b.nc * b.kc / 2, kStoredTileUnits);
  }
  EXPECT_EQ(kernels::detail::stored_blocking(10240).kc, 3584);  // 3584 + 3584 + 3072
  EXPECT_EQ(kernels::detail::stored_blocking(1184).kc, 1184);
}

TEST(GemmStored, TileEqualsDequantizersBitwise) {
  for (DType dtype : kStoredTypes) {
    for (int64_t k : awkward_k(dtype)) {
      // 300 = full tiles, then 44 features (a partial sub-tile of 64 and a partial group of 16).
      const int64_t n = 300;
      const Tensor w = make_weight(dtype, n, k, 5, dtype == DType::f16 || dtype == DType::f8_e4m3);
      const StoredGemm g = gemm_of(w);
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " k " + std::to_string(k));
      for_each_isa([&](IsaLevel) {
        std::vector<std::vector<uint16_t>> want(static_cast<size_t>(n));
        for (int64_t r = 0; r < n; ++r) want[size_t(r)] = reference_row_bf16(w, r);
        std::vector<uint32_t> tile(static_cast<size_t>(kStoredTileUnits));
        int bad = 0;
        // The product's tiles, and tiles of 4 sub-tiles (256 x 1024 where K allows).
        for (const StoredBlocking b :
             {kernels::detail::stored_blocking(k), StoredBlocking{256, std::min<int64_t>(k, 1024)}}) {
          for (int64_t n0 = 0; n0 < n; n0 += b.nc) {
            const int64_t rows = std::min(b.nc, n - n0);
            for (int64_t k0 = 0; k0 < k; k0 += b.kc) {
              const int64_t kc = std::min(b.kc, k - k0), pairs = kc / 2;
              std::fill(tile.begin(), tile.end(), 0xdeadbeefu);  // unwritten units show
              kernels::detail::dequantize_stored_tile(g, n0, rows, k0, kc, tile.data());
              const int64_t padded = (rows + kStoredNr - 1) / kStoredNr * kStoredNr;
              for (int64_t r = 0; r < padded; ++r) {
                for (int64_t p = 0; p < pairs; ++p) {
                  const uint32_t got = tile[size_t((r / kStoredNr * pairs + p) * kStoredNr + r % kStoredNr)];
                  uint32_t expect = 0;
                  if (r < rows) {
                    const auto& row = want[size_t(n0 + r)];
                    expect = row[size_t(k0 + 2 * p)] | uint32_t{row[size_t(k0 + 2 * p + 1)]} << 16;
                  }
                  if (got != expect && bad++ < 3) {
                    ADD_FAILURE() << "feature " << n0 + r << " pair " << (k0 / 2 + p) << ": " << std::hex << got
                                  << " vs " << expect;
                  }
                }
              }
            }
          }
        }
        EXPECT_EQ(bad, 0);
      });
    }
  }
}

// A tile of 4096 elements goes through the AVX-512 fallback (block types other than q8_0 / q4_K) in chunks:
// the chunk boundaries land where they should.
TEST(GemmStored, LongTileBitwise) {
  for (DType dtype : {DType::q5_K, DType::q4_0, DType::bf16}) {
    const int64_t n = 40, k = 4096;
    const Tensor w = make_weight(dtype, n, k, 11);
    const StoredGemm g = gemm_of(w);
    SCOPED_TRACE(dtype_name(dtype));
    for_each_isa([&](IsaLevel) {
      std::vector<uint32_t> tile(static_cast<size_t>(kStoredTileUnits), 0xdeadbeefu);
      kernels::detail::dequantize_stored_tile(g, 0, n, 0, k, tile.data());
      int bad = 0;
      for (int64_t r = 0; r < kStoredNr; ++r) {
        const auto row = r < n ? reference_row_bf16(w, r) : std::vector<uint16_t>(size_t(k), 0);
        for (int64_t p = 0; p < k / 2; ++p) {
          const uint32_t expect = row[size_t(2 * p)] | uint32_t{row[size_t(2 * p + 1)]} << 16;
          if (tile[size_t(p * kStoredNr + r)] != expect && bad++ < 3) ADD_FAILURE() << "feature " << r << " pair " << p;
        }
      }
      EXPECT_EQ(bad, 0);
    });
  }
}

// y = x W^T + b by gemm_stored_bf16 against the double-precision product of the same bf16 operands.
void check_product(DType dtype, int64_t m, int64_t n, int64_t k, bool with_bias) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " m " + std::to_string(m) + " n " + std::to_string(n) + " k " +
               std::to_string(k) + (with_bias ? " bias" : ""));
  const Tensor w = make_weight(dtype, n, k, uint64_t(m + n + k));
  const auto x32 = random_floats(size_t(m * k), uint64_t(m) * 7 + 1, -2.0f, 2.0f);
  const auto bias = random_floats(size_t(n), 9);
  std::vector<uint16_t> x(x32.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = f32_to_bf16(x32[i]);
  for_each_isa([&](IsaLevel) {
    std::vector<double> wd(size_t(n * k));
    for (int64_t r = 0; r < n; ++r) {
      const auto row = reference_row_bf16(w, r);
      for (int64_t j = 0; j < k; ++j) wd[size_t(r * k + j)] = bf16_to_f32(row[size_t(j)]);
    }
    StoredGemm g = gemm_of(w);
    std::vector<float> y(size_t(m * n), NAN);
    g.x = x.data(), g.m = m, g.y = y.data(), g.bias = with_bias ? bias.data() : nullptr;
    kernels::detail::gemm_stored_bf16(g);
    int bad = 0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = with_bias ? bias[size_t(j)] : 0.0, mag = std::fabs(sum);
        for (int64_t l = 0; l < k; ++l) {
          const double t = double(bf16_to_f32(x[size_t(i * k + l)])) * wd[size_t(j * k + l)];
          sum += t, mag += std::fabs(t);
        }
        const double got = y[size_t(i * n + j)], bound = double(k + 2) * std::ldexp(1.0, -24) * mag;
        if (!(std::fabs(got - sum) <= bound) && bad++ < 3) {
          ADD_FAILURE() << "y[" << i << ", " << j << "] = " << got << ", want " << sum << " within " << bound;
        }
      }
    }
    EXPECT_EQ(bad, 0);
  });
}

// Every stored form on rows that do not fill a 6-row block (1, 7, 33) and features that do not fill a 64-wide
// sub-tile (70, 300).
TEST(GemmStored, ProductWithinSumRounding) {
  for (DType dtype : kStoredTypes) {
    const auto ks = awkward_k(dtype);
    check_product(dtype, 1, 70, ks.front(), true);
    check_product(dtype, 7, 300, ks.back(), true);
    check_product(dtype, 33, 64, ks[1], false);
  }
}

// Larger M (257 = 42 full blocks of 6 and a 5-row tail, many prefetch steps; 1031 = two passes of 515 rows) and
// K up to 5120 (two K-blocks of 2560).
TEST(GemmStored, ProductLargeShapes) {
  for (DType dtype : {DType::q8_0, DType::q4_K, DType::f16, DType::f8_e4m3}) {
    check_product(dtype, 257, 130, 512, true);
    check_product(dtype, 7, 65, 5120, false);
  }
  for (DType dtype : {DType::q8_0, DType::q4_K}) check_product(dtype, kStoredMaxRows + 7, 130, 1280, true);
}

// Linear's per_call bf16 products of a stored-form weight take this kernel at every M, also from the 2048 rows on
// where they used to pack blocked panels for oneDNN, and a bf16 weight too (oneDNN read its rows where they lay):
// its output is the kernel's, bit for bit.
TEST(GemmStored, LinearPerCallTakesItAtEveryM) {
  if (!cpu_features().avx512_bf16) GTEST_SKIP() << "bf16 products need AVX512_BF16 (FLUX_CPU caps it)";
  kernels::detail::force_bf16_products(1);
  const int64_t n = 70, k = 512;
  for (DType dtype : {DType::q8_0, DType::bf16}) {
    const Tensor w = make_weight(dtype, n, k, 9);
    const Tensor bias = Tensor::from_f32({n}, random_floats(size_t(n), 10));
    const kernels::Linear lin(w, bias, kernels::WeightMode::per_call);
    for (int64_t m : {int64_t{3}, int64_t{256}, int64_t{2050}}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " m " + std::to_string(m));
      const auto x = random_floats(size_t(m * k), uint64_t(m));
      std::vector<float> y(size_t(m * n)), ref(size_t(m * n));
      lin.forward(x.data(), m, y.data());
      std::vector<uint16_t> xb(x.size());
      convert_f32_to_bf16(x.data(), xb.data(), xb.size());
      StoredGemm g = gemm_of(w);
      g.x = xb.data(), g.m = m, g.bias = bias.data<float>(), g.y = ref.data();
      kernels::detail::gemm_stored_bf16(g);
      EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0);
    }
  }
  kernels::detail::force_bf16_products(-1);
}

// A weight whose K the kernel cannot take is refused by name, not read out of bounds.
TEST(GemmStored, RefusesBadK) {
  EXPECT_FALSE(kernels::detail::gemm_stored_supports(DType::f16, 48));
  EXPECT_FALSE(kernels::detail::gemm_stored_supports(DType::q4_K, 288));
  EXPECT_TRUE(kernels::detail::gemm_stored_supports(DType::q4_K, 512));
  const Tensor w = make_weight(DType::f16, 4, 48, 1);
  StoredGemm g = gemm_of(w);
  std::vector<uint16_t> x(48);
  std::vector<float> y(4);
  g.x = x.data(), g.m = 1, g.y = y.data();
  try {
    kernels::detail::gemm_stored_bf16(g);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("K = 48"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flux::test
