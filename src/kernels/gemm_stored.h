// A bf16 GEMM over a weight in its stored form: y[M, N] = x[M, K] W[N, K]^T (+ b), x in bf16, W as stored
// (the ggml block types, f16, f8_e4m3, bf16, f32), f32 accumulation and output. W is never widened whole: each
// thread takes a contiguous range of output features, in tasks of 64, and, for each K-block (stored_blocking
// below), dequantizes that tile ONCE into a bf16 buffer that stays in L2 (tile layout below), then runs every
// block of x's rows over it with a register-blocked microkernel, while the next tile's stored bytes are
// prefetched. So the stored weight crosses memory once per pass of at most kStoredMaxRows rows, overlapped with
// the dot products (the per-panel widening before oneDNN's matmul did not overlap, and ran at the machine's
// memcpy rate).
//
// Tile layout (what vdpbf16ps multiplies): sub-tiles of kStoredNr = 64 output features; sub-tile s, pair p
// (elements k0 + 2p, k0 + 2p + 1), feature c (n0 + 64 s + c) is the 32-bit unit
//   tile[(s * kc / 2 + p) * 64 + c] = bf16(W[n, k0 + 2p]) | bf16(W[n, k0 + 2p + 1]) << 16,
// features past N zero. The bf16 values are bit for bit what dequantize_row_bf16 (ggml types, bf16) or
// convert_to_f32 + convert_f32_to_bf16 (f16, f8_e4m3, f32) give at the same ISA level, for every value those
// formats hold except f32 subnormals (flushed by the AVX-512 rounding; dequantized and 16/8-bit values are 0 or
// at least 2^-24 in magnitude).
// Only src/kernels/*.cc and their tests include this header.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace flux::kernels::detail {

constexpr int64_t kStoredNr = 64;              // output features per sub-tile (4 zmm of 16 f32 accumulators)
constexpr int64_t kStoredNcMax = 256;          // features per tile, at most (dequantize_stored_tile)
constexpr int64_t kStoredKcMax = 4096;         // K per tile, at most
constexpr int64_t kStoredTileUnits = 1 << 17;  // 32-bit units per tile (512 KB: half of Zen 4's 1 MB L2)
// Rows of x per pass: longer M runs in near-equal chunks of at most this many rows, one after the other, each
// dequantizing the weight again. A chunk's x (1024 x 3072 bf16, 6 MB) stays in L3 while every task re-reads it;
// all 4608 rows at once streamed x from DRAM once per task (M = 4608, one Zen 4 core: 0.92x of oneDNN's bf16
// product as one pass, 0.97x in chunks of 1024; the extra dequantize passes cost about 0.4% each).
constexpr int64_t kStoredMaxRows = 1024;

// A task's tile, from stored_blocking(k): nc = 64 features (one sub-tile), kc = K split into near-equal blocks
// of at most kStoredKcMax, each a multiple of 256 (so of every block size) or the rest of K. At small M the
// dequantized tile is used by few rows, so its stored bytes must already be in L2 when it is dequantized: a
// 64-feature tile's next block is small enough to prefetch without evicting the current one (M = 256, one Zen 4
// core: the dequantize pass measured 4% of the product against 7-8% with 256 x 1024 tiles), and y's block
// is written once per K-block, so once for K <= 4096.
struct StoredBlocking {
  int64_t nc = 0, kc = 0;
};
StoredBlocking stored_blocking(int64_t k);

// Whether gemm_stored_bf16 takes a weight of this dtype and K: K a multiple of 32 (whole pairs, whole 16-unit
// transposes) and of the dtype's block size.
bool gemm_stored_supports(DType dtype, int64_t k);

// The arguments of one product. w: [n, k] of `dtype`, rows dtype_nbytes(dtype, k) bytes apart. x: [m, k] bf16
// bits, row-major. bias: [n] or null. y: [m, n] f32, row-major (overwritten).
struct StoredGemm {
  DType dtype = DType::f32;
  const void* w = nullptr;
  int64_t n = 0, k = 0;
  const uint16_t* x = nullptr;
  int64_t m = 0;
  const float* bias = nullptr;
  float* y = nullptr;
};

// The product, threaded on the default pool over near-equal contiguous ranges of features (one per thread); AVX-512
// BF16 microkernel where the CPU has it (isa_level() avx512 and avx512_bf16), else the scalar twin. Checks
// gemm_stored_supports.
void gemm_stored_bf16(const StoredGemm& g);

// Tests: dequantizes features [n0, n0 + rows) (rows <= kStoredNcMax), elements [k0, k0 + kc) (kc <= kStoredKcMax,
// a multiple of 32 and of the block size, the tile at most kStoredTileUnits) of g.w into `tile` (ceil(rows / 64)
// sub-tiles of kc / 2 * 64 units) in the layout above, at the current ISA level.
void dequantize_stored_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile);

// Linear's per_call bf16 products use gemm_stored_bf16 (on, the default) or oneDNN (off: the stored bf16 rows,
// or widened panels of any other form): for benchmarks and tests (defined in linear.cc).
void set_linear_stored_gemm(bool on);

// One thread's task: features [n0, n0 + nc) (nc <= b.nc) of y over all of K (in blocks of b.kc) and M. `tile`
// holds kStoredTileUnits units (64-byte aligned). next_n0: the task this thread likely runs next (its first
// tile is prefetched during the last K-block), or -1.
namespace scalar {
void dequantize_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile);
void gemm_block(const StoredGemm& g, StoredBlocking b, int64_t n0, int64_t nc, int64_t next_n0, uint32_t* tile);
}  // namespace scalar
namespace avx512 {  // needs AVX512_BF16
void dequantize_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile);
void gemm_block(const StoredGemm& g, StoredBlocking b, int64_t n0, int64_t nc, int64_t next_n0, uint32_t* tile);
}  // namespace avx512

}  // namespace flux::kernels::detail
