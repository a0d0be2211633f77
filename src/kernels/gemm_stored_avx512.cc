// gemm_stored.h on AVX512_BF16: tiles dequantized and transposed into vdpbf16ps's pair layout by the packer's
// 16 x 16 transposes (linear_pack_avx512.cc: straight from the stored rows for f16, f8, bf16, f32, q8_0, q4_0,
// q4_1, q5_0, q5_1, q4_K, q5_K and q6_K; q2_K and q3_K through dequantize_row into a 16-row f32 buffer), then a
// 6 x 64 microkernel (24 zmm accumulators, 4 tile loads and 6 broadcasts of x per pair of K), with the next tile's
// stored bytes prefetched from inside the microkernel (a line or so every kPrefetchPairs pairs of K), and the next
// block's rows of y a block ahead.
// Measured on one Zen 4 core against oneDNN's bf16 product (process CPU time, so other load does not count):
// software prefetch of x's next rows (up to 6 x 8 KB a block ahead) cost 2-4% at every M against leaving them
// to the hardware prefetcher (M = 4608: 0.96x with, 0.99x without); a 7 x 64 kernel (all 32 zmm, x pairs as
// embedded broadcasts in inline assembly) measured the same as this one, within the noise.
// Reached only when cpu_features() has AVX-512 and AVX512_BF16.
// g++ 12 flags the intrinsics' own `_mm512_undefined_epi32()` pass-through as uninitialized once inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/gemm_stored.h"
#include "kernels/linear_pack.h"
#include "tensor/convert.h"
#include "tensor/quant.h"

namespace flux::kernels::detail::avx512 {
namespace {

constexpr int kMr = 6;                 // rows of x per microkernel call
constexpr int64_t kPrefetchPairs = 8;  // pairs of K between two steps of the next tile's prefetch

// Rows [r0, r0 + 16) of a sub-tile (some past `rows`: zero) into the sub-tile's columns r0..r0 + 15 (`out`
// points at column r0 of pair 0): through an f32 (or, for bf16, 32-bit unit) buffer where the stored rows cannot
// be transposed where they lie (q2_K, q3_K, or a partial group of rows).
void tile_group(const StoredGemm& g, int64_t n_first, int64_t r_valid, int64_t k0, int64_t kc, uint32_t* out) {
  const size_t row_bytes = dtype_nbytes(g.dtype, g.k), skip = dtype_nbytes(g.dtype, k0);
  const auto* base = static_cast<const uint8_t*>(g.w) + static_cast<size_t>(n_first) * row_bytes + skip;
  const int64_t ku = kc / 2;
  if (r_valid == 16) {
    if (pack_tile_blocks(g.dtype, base, row_bytes, 16, ku, kStoredNr, out)) return;
    switch (g.dtype) {
      case DType::f16:
        return pack_tile_f16(reinterpret_cast<const uint16_t*>(base), g.k, 16, 1, ku, kStoredNr, 0, out);
      case DType::f8_e4m3:
        return pack_tile_f8(base, g.k, 16, 1, ku, kStoredNr, 0, out);
      case DType::bf16:
        return pack_tile(reinterpret_cast<const uint32_t*>(base), g.k / 2, 16, 1, ku, kStoredNr, 0, out);
      case DType::f32:
        return pack_tile_bf16(reinterpret_cast<const float*>(base), g.k, 16, 1, ku, kStoredNr, 0, out);
      default:
        break;
    }
  }
  // In chunks of kChunk elements (whole blocks of every type), so the buffer stays 64 KB of stack.
  constexpr int64_t kChunk = 1024;
  alignas(64) float buf[16 * kChunk];
  for (int64_t e0 = 0; e0 < kc; e0 += kChunk) {
    const int64_t ec = std::min(kChunk, kc - e0);
    const uint8_t* src = base + dtype_nbytes(g.dtype, e0);
    uint32_t* dst = out + e0 / 2 * kStoredNr;
    if (g.dtype == DType::bf16) {
      auto* units = reinterpret_cast<uint32_t*>(buf);
      for (int64_t r = 0; r < 16; ++r) {
        if (r < r_valid) {
          std::memcpy(units + r * ec / 2, src + r * row_bytes, static_cast<size_t>(ec) * 2);
        } else {
          std::memset(units + r * ec / 2, 0, static_cast<size_t>(ec) * 2);
        }
      }
      pack_tile(units, ec / 2, 16, 1, ec / 2, kStoredNr, 0, dst);
      continue;
    }
    for (int64_t r = 0; r < 16; ++r) {
      float* row = buf + r * ec;
      if (r >= r_valid) {
        std::memset(row, 0, static_cast<size_t>(ec) * sizeof(float));
      } else if (is_quantized(g.dtype)) {
        dequantize_row(g.dtype, src + r * row_bytes, row, ec);
      } else {
        convert_to_f32(g.dtype, src + r * row_bytes, row, static_cast<size_t>(ec));
      }
    }
    pack_tile_bf16(buf, ec, 16, 1, ec / 2, kStoredNr, 0, dst);
  }
}

// Software prefetch of the next tile's stored bytes (rows n0..n0 + nc, elements k0..k0 + kc), spread over
// `steps` calls of step() so the DRAM reads overlap the products of the current tile.
class Prefetcher {
 public:
  Prefetcher(const StoredGemm& g, int64_t n0, int64_t nc, int64_t k0, int64_t kc, int64_t steps) {
    if (kc <= 0) return;
    row_bytes_ = dtype_nbytes(g.dtype, g.k);
    first_ = static_cast<const char*>(g.w) + static_cast<size_t>(n0) * row_bytes_ + dtype_nbytes(g.dtype, k0);
    const size_t span = dtype_nbytes(g.dtype, kc);
    lines_per_row_ = static_cast<int64_t>((span + 63) / 64) + 1;  // +1: the span need not start on a line
    rows_ = nc;
    const int64_t total = rows_ * lines_per_row_;
    per_step_ = (total + steps - 1) / steps;
  }
  void step() {
    for (int64_t i = 0; i < per_step_ && row_ < rows_; ++i) {
      _mm_prefetch(first_ + static_cast<size_t>(row_) * row_bytes_ + static_cast<size_t>(line_) * 64, _MM_HINT_T1);
      if (++line_ == lines_per_row_) line_ = 0, ++row_;
    }
  }

 private:
  const char* first_ = nullptr;
  size_t row_bytes_ = 0;
  int64_t lines_per_row_ = 0, rows_ = 0, per_step_ = 0, row_ = 0, line_ = 0;
};

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<const __m512bh&>(v); }

// c[MR, 64] (ldc) = (accumulate ? c : init) + a[MR, 2 * pairs] (lda) x sub-tile b; columns outside `mask`
// neither read nor written. init: the 4 vectors of bias (or zero) for the first K-block.
template <int MR>
void micro(const uint16_t* a, int64_t lda, const uint32_t* b, int64_t pairs, float* c, int64_t ldc,
           const __mmask16* mask, const __m512* init, bool accumulate, Prefetcher& next) {
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) {
      acc[r][q] = accumulate ? _mm512_maskz_loadu_ps(mask[q], c + r * ldc + 16 * q) : init[q];
    }
  }
  for (int64_t p = 0; p < pairs; ++p, b += kStoredNr) {
    if (p % kPrefetchPairs == 0) next.step();
    const __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 16);
    const __m512i b2 = _mm512_load_si512(b + 32), b3 = _mm512_load_si512(b + 48);
    for (int r = 0; r < MR; ++r) {
      uint32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * p, sizeof pair);
      const __m512bh av = as_bh(_mm512_set1_epi32(static_cast<int>(pair)));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, as_bh(b0));
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, as_bh(b1));
      acc[r][2] = _mm512_dpbf16_ps(acc[r][2], av, as_bh(b2));
      acc[r][3] = _mm512_dpbf16_ps(acc[r][3], av, as_bh(b3));
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) _mm512_mask_storeu_ps(c + r * ldc + 16 * q, mask[q], acc[r][q]);
  }
}

using Micro = void (*)(const uint16_t*, int64_t, const uint32_t*, int64_t, float*, int64_t, const __mmask16*,
                       const __m512*, bool, Prefetcher&);
constexpr Micro kMicro[kMr + 1] = {nullptr, micro<1>, micro<2>, micro<3>, micro<4>, micro<5>, micro<6>};

}  // namespace

void dequantize_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile) {
  const int64_t pairs = kc / 2, padded = (rows + kStoredNr - 1) / kStoredNr * kStoredNr;
  for (int64_t r0 = 0; r0 < padded; r0 += 16) {
    uint32_t* out = tile + r0 / kStoredNr * pairs * kStoredNr + r0 % kStoredNr;
    tile_group(g, n0 + r0, std::clamp<int64_t>(rows - r0, 0, 16), k0, kc, out);
  }
}

void gemm_block(const StoredGemm& g, StoredBlocking b, int64_t n0, int64_t nc, int64_t next_n0, uint32_t* tile) {
  const int64_t n_sub = (nc + kStoredNr - 1) / kStoredNr;
  __mmask16 mask[kStoredNcMax / kStoredNr][4];
  __m512 init[kStoredNcMax / kStoredNr][4];
  for (int64_t s = 0; s < n_sub; ++s) {
    for (int q = 0; q < 4; ++q) {
      const int64_t valid = std::clamp<int64_t>(nc - s * kStoredNr - 16 * q, 0, 16);
      mask[s][q] = static_cast<__mmask16>((1u << valid) - 1);
      init[s][q] =
          g.bias ? _mm512_maskz_loadu_ps(mask[s][q], g.bias + n0 + s * kStoredNr + 16 * q) : _mm512_setzero_ps();
    }
  }
  // The next tile's prefetches go out from inside the microkernel, ceil(lines / slots) every kPrefetchPairs pairs
  // (at M = 256: one line every 8 pairs, through the first 3/4 of the calls for a bf16 tile, the first 1/4 for
  // q4_K). Issued a slice after each call (bf16, K = 10240: 168 lines at once), they cost the large-K products
  // 2-5%: 256 x 10240 x 4096 per call against bf16 prepacked, one Zen 5, 3 alternated rounds: bf16 0.950 ->
  // 0.994, f16 0.941 -> 0.993, q8_0 0.958 -> 1.001; 256 x 15360 x 3072 bf16 0.940 -> 0.983.
  const int64_t m_steps = (g.m + kMr - 1) / kMr * n_sub;
  for (int64_t k0 = 0; k0 < g.k; k0 += b.kc) {
    const int64_t kc = std::min(b.kc, g.k - k0), pairs = kc / 2;
    dequantize_tile(g, n0, nc, k0, kc, tile);
    const bool last = k0 + kc >= g.k;
    const int64_t steps = m_steps * ((pairs + kPrefetchPairs - 1) / kPrefetchPairs);
    Prefetcher next = !last ? Prefetcher(g, n0, nc, k0 + kc, std::min(b.kc, g.k - k0 - kc), steps)
                      : next_n0 < 0
                          ? Prefetcher(g, 0, 0, 0, 0, steps)
                          : Prefetcher(g, next_n0, std::min(b.nc, g.n - next_n0), 0, std::min(b.kc, g.k), steps);
    for (int64_t m0 = 0; m0 < g.m; m0 += kMr) {
      const Micro run = kMicro[std::min<int64_t>(kMr, g.m - m0)];
      // After the first K-block, the next row block's y (short runs, 6 rows apart, that the hardware prefetcher
      // does not catch). x's rows are long runs it does catch.
      for (int64_t r = m0 + kMr; k0 > 0 && r < std::min(g.m, m0 + 2 * kMr); ++r) {
        const char* out = reinterpret_cast<const char*>(g.y + r * g.n + n0);
        for (int64_t off = 0; off < nc * 4; off += 64) _mm_prefetch(out + off, _MM_HINT_T0);
      }
      for (int64_t s = 0; s < n_sub; ++s) {
        run(g.x + m0 * g.k + k0, g.k, tile + s * pairs * kStoredNr, pairs, g.y + m0 * g.n + n0 + s * kStoredNr, g.n,
            mask[s], init[s], k0 > 0, next);
      }
    }
  }
}

}  // namespace flux::kernels::detail::avx512
