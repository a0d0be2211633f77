// gemm_stored.h: the dispatch (threads over blocks of output features) and the scalar twin, which walks the same
// tiles in plain loops: the reference the AVX-512 microkernel is tested against, and the path at lower ISA
// levels (which never multiply in bf16 in production: linear_compute_dtype picks f32 there).
#include "kernels/gemm_stored.h"

#include <algorithm>
#include <cstring>

#include "base/aligned_buffer.h"
#include "base/cpu.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "tensor/convert.h"
#include "tensor/quant.h"

namespace flux::kernels::detail {
namespace {

bool use_avx512() { return isa_level() == IsaLevel::avx512 && cpu_features().avx512_bf16; }

void check_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc) {
  FLUX_CHECK(rows > 0 && rows <= kStoredNcMax && n0 >= 0 && n0 + rows <= g.n, "dequantize_stored_tile: features [", n0,
             ", ", n0 + rows, ") out of range [0, ", g.n, ") or more than ", kStoredNcMax);
  FLUX_CHECK(kc > 0 && kc <= kStoredKcMax && kc % 32 == 0 && k0 % 32 == 0 && k0 + kc <= g.k &&
                 kc % dtype_block_size(g.dtype) == 0 && k0 % dtype_block_size(g.dtype) == 0,
             "dequantize_stored_tile: elements [", k0, ", ", k0 + kc, ") of K = ", g.k, " are not whole ",
             dtype_name(g.dtype), " blocks and 32-element groups of at most ", kStoredKcMax);
  const int64_t padded = (rows + kStoredNr - 1) / kStoredNr * kStoredNr;
  FLUX_CHECK(padded * kc / 2 <= kStoredTileUnits, "dequantize_stored_tile: a tile of ", padded, " x ", kc,
             " is larger than ", kStoredTileUnits, " units");
}

}  // namespace

StoredBlocking stored_blocking(int64_t k) {
  const int64_t n_blocks = (k + kStoredKcMax - 1) / kStoredKcMax;
  const int64_t kc = ((k + n_blocks - 1) / n_blocks + 255) / 256 * 256;  // near-equal, whole 256-element groups
  return {kStoredNr, std::min(k, kc)};
}

bool gemm_stored_supports(DType dtype, int64_t k) {
  const bool known = is_quantized(dtype) || dtype == DType::f16 || dtype == DType::f8_e4m3 || dtype == DType::bf16 ||
                     dtype == DType::f32;
  return known && k > 0 && k % 32 == 0 && k % dtype_block_size(dtype) == 0;
}

void dequantize_stored_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile) {
  check_tile(g, n0, rows, k0, kc);
  if (use_avx512()) {
    avx512::dequantize_tile(g, n0, rows, k0, kc, tile);
  } else {
    scalar::dequantize_tile(g, n0, rows, k0, kc, tile);
  }
}

namespace {

// gemm_stored_bf16 on rows of x that share the caches (at most kStoredMaxRows).
void run_rows(const StoredGemm& g) {
  const bool fast = use_avx512();
  const StoredBlocking b = stored_blocking(g.k);
  // Each thread takes one contiguous range of N (a near-equal share in whole 64-feature sub-tiles) and walks
  // it in tasks of up to b.nc features. Dynamic chunks of whole tasks left one thread 4 tasks behind the
  // other at N = 9216 (36 tasks in chunks of 5): 0.85-0.89x of oneDNN there against 0.93-0.97x elsewhere.
  const int64_t n_units = (g.n + kStoredNr - 1) / kStoredNr;
  const int64_t n_parts = std::min<int64_t>(default_pool().n_threads(), n_units);
  parallel_for(n_parts, [&](int64_t p0, int64_t p1) {
    // Per-thread, grown once: a tile of up to kStoredTileUnits bf16 pairs (L2-resident).
    thread_local AlignedBuffer tile;
    tile.resize(static_cast<size_t>(kStoredTileUnits) * sizeof(uint32_t));
    for (int64_t part = p0; part < p1; ++part) {
      const int64_t c0 = part * n_units / n_parts * kStoredNr;
      const int64_t c1 = std::min(g.n, (part + 1) * n_units / n_parts * kStoredNr);
      for (int64_t n0 = c0; n0 < c1; n0 += b.nc) {
        const int64_t nc = std::min(b.nc, c1 - n0);
        const int64_t next_n0 = n0 + nc < c1 ? n0 + nc : -1;  // this thread's next task
        if (fast) {
          avx512::gemm_block(g, b, n0, nc, next_n0, tile.as<uint32_t>());
        } else {
          scalar::gemm_block(g, b, n0, nc, next_n0, tile.as<uint32_t>());
        }
      }
    }
  });
}

}  // namespace

void gemm_stored_bf16(const StoredGemm& g) {
  FLUX_CHECK(gemm_stored_supports(g.dtype, g.k), "gemm_stored_bf16: a ", dtype_name(g.dtype), " weight with K = ", g.k,
             " (expected a multiple of 32 and of the block size ", dtype_block_size(g.dtype), ")");
  FLUX_CHECK(g.n > 0 && g.m >= 0 && g.w && g.y && (g.m == 0 || g.x), "gemm_stored_bf16: bad shape M = ", g.m,
             ", N = ", g.n, " or null operand");
  // Near-equal chunks of at most kStoredMaxRows rows, one after the other (both threads on the same chunk).
  const int64_t n_chunks = (g.m + kStoredMaxRows - 1) / kStoredMaxRows;
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t m0 = c * g.m / n_chunks, m1 = (c + 1) * g.m / n_chunks;
    StoredGemm rows = g;
    rows.x = g.x + m0 * g.k, rows.m = m1 - m0, rows.y = g.y + m0 * g.n;
    run_rows(rows);
  }
}

namespace scalar {

void dequantize_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile) {
  const size_t row_bytes = dtype_nbytes(g.dtype, g.k), skip = dtype_nbytes(g.dtype, k0);
  const int64_t pairs = kc / 2, padded = (rows + kStoredNr - 1) / kStoredNr * kStoredNr;
  uint16_t wide[kStoredKcMax];
  float f32[kStoredKcMax];
  for (int64_t r = 0; r < padded; ++r) {
    uint32_t* sub = tile + r / kStoredNr * pairs * kStoredNr + r % kStoredNr;
    if (r >= rows) {
      for (int64_t p = 0; p < pairs; ++p) sub[p * kStoredNr] = 0;
      continue;
    }
    const void* src = static_cast<const uint8_t*>(g.w) + static_cast<size_t>(n0 + r) * row_bytes + skip;
    // The conversions widen_span (linear_pack.cc) makes for a bf16 product, so the same bits.
    if (is_quantized(g.dtype) || g.dtype == DType::bf16) {
      dequantize_row_bf16(g.dtype, src, wide, kc);
    } else {
      convert_to_f32(g.dtype, src, f32, static_cast<size_t>(kc));
      convert_f32_to_bf16(f32, wide, static_cast<size_t>(kc));
    }
    for (int64_t p = 0; p < pairs; ++p) sub[p * kStoredNr] = wide[2 * p] | static_cast<uint32_t>(wide[2 * p + 1]) << 16;
  }
}

void gemm_block(const StoredGemm& g, StoredBlocking b, int64_t n0, int64_t nc, int64_t /*next_n0*/, uint32_t* tile) {
  for (int64_t k0 = 0; k0 < g.k; k0 += b.kc) {
    const int64_t kc = std::min(b.kc, g.k - k0), pairs = kc / 2;
    dequantize_tile(g, n0, nc, k0, kc, tile);
    for (int64_t i = 0; i < g.m; ++i) {
      const uint16_t* a = g.x + i * g.k + k0;
      float* y = g.y + i * g.n + n0;
      for (int64_t c = 0; c < nc; ++c) {
        const uint32_t* b = tile + c / kStoredNr * pairs * kStoredNr + c % kStoredNr;
        float acc = k0 > 0 ? y[c] : g.bias ? g.bias[n0 + c] : 0.0f;
        for (int64_t p = 0; p < pairs; ++p) {
          const uint32_t u = b[p * kStoredNr];
          acc += bf16_to_f32(a[2 * p]) * bf16_to_f32(static_cast<uint16_t>(u)) +
                 bf16_to_f32(a[2 * p + 1]) * bf16_to_f32(static_cast<uint16_t>(u >> 16));
        }
        y[c] = acc;
      }
    }
  }
}

}  // namespace scalar
}  // namespace flux::kernels::detail
