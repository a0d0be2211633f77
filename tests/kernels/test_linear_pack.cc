// Linear's weight packing (src/kernels/linear_pack.h): the direct packer writes the very bytes the two-pass
// path (widen, then oneDNN's reorder) writes, padding included, for every stored dtype on awkward K and N and
// at every ISA level; each ISA's pack_tile equals the scalar twin; and the products agree bit for bit
// whichever way and whenever (prepacked or per call) the weight was packed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "base/cpu.h"
#include "isa_levels.h"
#include "kernels/gemm_stored.h"
#include "kernels/internal.h"
#include "kernels/linear_pack.h"
#include "kernels/matmul.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "test_util.h"

namespace flux::test {
namespace {

const DType kStoredTypes[] = {DType::f32,  DType::bf16, DType::f16,  DType::f8_e4m3, DType::q4_0,
                              DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,    DType::q2_K,
                              DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K};

// A [n, k] weight of `dtype` with random values (quantized as sd.cpp does; f8 bytes cycling through every
// code). With `specials`, f16 and f8 weights also hold infinities, NaNs, signed zeros and subnormals.
Tensor make_weight(DType dtype, int64_t n, int64_t k, uint64_t seed, bool specials = false) {
  const auto v = random_floats(size_t(n * k), seed, -1.0f, 1.0f);
  const Tensor w32 = Tensor::from_f32({n, k}, v);
  if (is_quantized(dtype)) {
    const auto ones = unit_importance(k);
    return quantize(w32, dtype, ones.data());
  }
  if (dtype != DType::f8_e4m3) {
    Tensor w = w32.to(dtype);
    if (dtype == DType::f16 && specials) {
      const uint16_t bits[] = {0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe01, 0x7bff, 0x0400, 0x8000};
      auto* p = static_cast<uint16_t*>(w.raw_mut());
      for (size_t i = 3; i < v.size(); i += 7) p[i] = bits[i % std::size(bits)];
    }
    return w;
  }
  Tensor w = Tensor::empty(dtype, {n, k});
  auto* p = static_cast<uint8_t*>(w.raw_mut());
  for (size_t i = 0; i < v.size(); ++i) {
    uint8_t b = static_cast<uint8_t>((i * 37 + 11 + seed) % 256);
    if ((b & 0x7f) == 0x7f && !specials) b = 0x3c;  // 0x7f / 0xff are NaN in e4m3fn
    p[i] = b;
  }
  return w;
}

// K values that are awkward for each storage type: the smallest legal K, K not a multiple of oneDNN's K
// block (16 for f32, 32 for bf16) where the type allows it, and K crossing the packer's tiles (512 or 1024
// long), whole tiles then being read in place (f32 and bf16) and the last one not.
std::vector<int64_t> awkward_k(DType dtype) {
  if (dtype_block_size(dtype) == 256) return {256, 768};
  if (dtype_block_size(dtype) == 32) return {32, 96, 1184};
  return {1, 53, 300, 2100};
}

// The dtypes oneDNN can multiply weights of `stored` in: f32 weights stay f32; the others go to f32 or bf16.
std::vector<DType> compute_types(DType stored) {
  if (stored == DType::f32 || !cpu_detected().avx512_bf16) return {DType::f32};
  return {DType::f32, DType::bf16};
}

TEST(LinearPack, DirectEqualsReorderByteForByte) {
  // Panels: a whole N (150: two full 64-blocks and a 22-row tail block), the 86-wide tail panel starting at
  // row 64, and a 37-wide one (a single, partial block) starting at row 100.
  struct Panel {
    int64_t n0, width;
  };
  const Panel panels[] = {{0, 150}, {64, 86}, {100, 37}};
  for (DType stored : kStoredTypes) {
    for (int64_t k : awkward_k(stored)) {
      const Tensor w = make_weight(stored, 150, k, uint64_t(k), /*specials=*/true);
      for (DType compute : compute_types(stored)) {
        for (Panel p : panels) {
          SCOPED_TRACE(std::string(dtype_name(stored)) + " -> " + dtype_name(compute) + " k " + std::to_string(k) +
                       " rows [" + std::to_string(p.n0) + ", " + std::to_string(p.n0 + p.width) + ")");
          for_each_isa([&](IsaLevel) {
            std::vector<uint8_t> direct, two_pass;
            ASSERT_TRUE(kernels::detail::pack_linear_panel(w, compute, p.n0, p.width, false, two_pass));
            const bool known = kernels::detail::pack_linear_panel(w, compute, p.n0, p.width, true, direct);
            if (!known) {
              // Only oneDNN's AVX-512 layouts are promised to be known (the ones this project measured).
              EXPECT_FALSE(cpu_detected().avx512()) << "direct packer does not know oneDNN's layout";
              return;
            }
            ASSERT_EQ(direct.size(), two_pass.size());
            size_t first = 0;
            while (first < direct.size() && direct[first] == two_pass[first]) ++first;
            EXPECT_EQ(first, direct.size()) << "first differing byte at " << first << " of " << direct.size();
          });
        }
      }
    }
  }
}

TEST(LinearPack, PackTileMatchesScalarTwin) {
  // 3 blocks from a tile with a padded row stride, into blocks 2 blocks apart; `rows` of the nb columns.
  struct Case {
    int64_t rows, ku, nb;
  };
  for (Case c : {Case{64, 16, 64}, Case{16, 16, 64}, Case{16, 16, 16}, Case{32, 32, 48}, Case{8, 8, 24}}) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " ku " + std::to_string(c.ku) + " nb " + std::to_string(c.nb));
    const int64_t n_blocks = 3, ld = n_blocks * c.ku + 5, k_stride = 2 * c.ku * c.nb;
    std::vector<uint32_t> tile(size_t(c.rows * ld));
    for (size_t i = 0; i < tile.size(); ++i) tile[i] = uint32_t(i * 2654435761u);
    std::vector<uint32_t> want(size_t(n_blocks * k_stride), 7u), got;
    kernels::detail::scalar::pack_tile(tile.data(), ld, c.rows, n_blocks, c.ku, c.nb, k_stride, want.data());
    for (int64_t b = 0; b < n_blocks; ++b) {  // the scalar twin is the definition: spot-check it
      EXPECT_EQ(want[size_t(b * k_stride + 1 * c.nb + 2)], tile[size_t(2 * ld + b * c.ku + 1)]);
      EXPECT_EQ(want[size_t(b * k_stride + (c.ku - 1) * c.nb + c.rows - 1)],
                tile[size_t((c.rows - 1) * ld + b * c.ku + c.ku - 1)]);
    }
    if (cpu_detected().avx2 && c.rows % 8 == 0 && c.ku % 8 == 0) {
      got.assign(want.size(), 7u);
      kernels::detail::avx2::pack_tile(tile.data(), ld, c.rows, n_blocks, c.ku, c.nb, k_stride, got.data());
      EXPECT_EQ(got, want) << "avx2";
    }
    if (cpu_detected().avx512() && c.rows % 16 == 0 && c.ku % 16 == 0) {
      got.assign(want.size(), 7u);
      kernels::detail::avx512::pack_tile(tile.data(), ld, c.rows, n_blocks, c.ku, c.nb, k_stride, got.data());
      EXPECT_EQ(got, want) << "avx512";
    }
    if (cpu_detected().avx512() && cpu_detected().avx512_bf16 && c.rows % 16 == 0 && c.ku % 16 == 0) {
      // From floats: each unit is the bf16 pair (f32_to_bf16(k even), f32_to_bf16(k odd)), low half first.
      std::vector<float> ftile(size_t(c.rows * ld * 2));
      const auto values = random_floats(ftile.size(), 21, -3.0f, 3.0f);
      for (size_t i = 0; i < ftile.size(); ++i) ftile[i] = i % 7 == 3 ? bf16_to_f32(f32_to_bf16(values[i])) : values[i];
      std::vector<uint32_t> units(tile.size());
      for (size_t i = 0; i < units.size(); ++i) {
        units[i] = uint32_t(f32_to_bf16(ftile[2 * i])) | uint32_t(f32_to_bf16(ftile[2 * i + 1])) << 16;
      }
      kernels::detail::scalar::pack_tile(units.data(), ld, c.rows, n_blocks, c.ku, c.nb, k_stride, want.data());
      got.assign(want.size(), 7u);
      kernels::detail::avx512::pack_tile_bf16(ftile.data(), 2 * ld, c.rows, n_blocks, c.ku, c.nb, k_stride, got.data());
      EXPECT_EQ(got, want) << "avx512 from f32";
    }
  }
}

// y of a Linear over w made in `mode`, packing directly or in two passes.
std::vector<float> forward(const Tensor& w, const Tensor& bias, kernels::WeightMode mode, bool direct,
                           const std::vector<float>& x, int64_t m) {
  kernels::detail::set_linear_direct_pack(direct);
  const kernels::Linear lin(w, bias, mode);
  kernels::detail::set_linear_direct_pack(true);
  std::vector<float> y(size_t(m * w.dim(0)), NAN);
  lin.forward(x.data(), m, y.data());
  return y;
}

void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << what;
}

// Equal up to the order of the K sum: |got - want| <= 1e-5 sum_k |x w| (+ the bias) per output.
void expect_same_sum(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& x,
                     const Tensor& w, int64_t m, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  const int64_t n = w.dim(0), k = w.dim(1);
  const Tensor wf = w.to(DType::f32);
  int bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double mag = 1.0;
      for (int64_t l = 0; l < k; ++l) mag += std::fabs(double(x[size_t(i * k + l)]) * wf.data<float>()[j * k + l]);
      const size_t at = size_t(i * n + j);
      if (!(std::fabs(double(got[at]) - want[at]) <= 1e-5 * mag) && bad++ < 3) {
        ADD_FAILURE() << what << ": y[" << i << ", " << j << "] " << got[at] << " vs " << want[at];
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

// Per-call products (panels of 64 output features, so 150 = 64 + 64 + 22, or one panel) agree with the
// prepacked product, and direct packing equals two-pass packing in both modes, for every stored dtype, both
// product dtypes and at every ISA level. Per-call panels packed blocked (from set_linear_blocked_from_m rows)
// equal the prepacked product bit for bit where the weight is in one of oneDNN's blocked layouts (its brgemm
// kernels: AVX-512 machines), whose K order does not depend on N. The stored rows handed to oneDNN as they are
// (format ba, below that many rows), and the plain layout of AVX2 machines (oneDNN's sgemm, which partitions K
// by the problem's shape, seen with M = 7), may round differently: there they agree to the order of the sum.
TEST(LinearPack, PerCallForwardEqualsPrepackedBitwise) {
  const int64_t n = 150;
  for (DType stored : kStoredTypes) {
    const int64_t k = awkward_k(stored).back();
    const Tensor w = make_weight(stored, n, k, 3);
    const Tensor bias = Tensor::from_f32({n}, random_floats(size_t(n), 4));
    for (int force : {0, 1}) {
      if (force == 1 && (stored == DType::f32 || !cpu_detected().avx512_bf16)) continue;
      kernels::detail::force_bf16_products(force);
      SCOPED_TRACE(std::string(dtype_name(stored)) + (force ? " bf16 products" : " f32 products"));
      const DType compute = stored == DType::f32 ? DType::f32 : kernels::linear_compute_dtype();
      const bool blocked = kernels::detail::recognise_pack_layout(kernels::detail::linear_weight_layout(k, n, compute, true))
                               .has_value();
      kernels::detail::set_linear_stored_gemm(false);  // the oneDNN panel paths (gemm_stored has its own tests)
      for_each_isa([&](IsaLevel) {
        for (int64_t m : {1, 7, 70}) {
          SCOPED_TRACE("m " + std::to_string(m));
          const auto x = random_floats(size_t(m * k), uint64_t(m) + 11);
          const auto packed = forward(w, bias, kernels::WeightMode::prepacked, true, x, m);
          expect_bitwise(forward(w, bias, kernels::WeightMode::prepacked, false, x, m), packed, "prepacked, 2-pass");
          // 64-feature panels, then the default (one panel); the stored rows (ba), then blocked panels.
          for (int64_t blocked_from : {int64_t{0}, int64_t{1}}) {
            kernels::detail::set_linear_blocked_from_m(blocked_from);
            for (int64_t panel_bytes : {int64_t{1}, int64_t{0}}) {
              kernels::detail::set_linear_panel_bytes(panel_bytes);
              const auto per_call = forward(w, bias, kernels::WeightMode::per_call, true, x, m);
              expect_bitwise(forward(w, bias, kernels::WeightMode::per_call, false, x, m), per_call,
                             "per_call, 2-pass");
              if (blocked && blocked_from == 1) {
                expect_bitwise(per_call, packed, "per_call, blocked panels");
              } else {
                expect_same_sum(per_call, packed, x, w, m, "per_call");
              }
            }
          }
          kernels::detail::set_linear_blocked_from_m(0);
        }
      });
    }
  }
  kernels::detail::force_bf16_products(-1);
  kernels::detail::set_linear_stored_gemm(true);
}

}  // namespace
}  // namespace flux::test
