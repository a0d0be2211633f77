// A bf16 GEMM over a weight in its stored form: y[M, N] = x[M, K] W[N, K]^T (+ b), x in bf16, W as stored
// (the ggml block types, f16, f8_e4m3, bf16, f32), f32 accumulation and output. W is never widened whole: each
// thread takes a contiguous range of output features, in blocks of up to kStoredNc, and, for each K-block of kStoredKc,
// dequantizes that tile ONCE into a bf16 buffer that stays in L2 (tile layout below), then runs every block of x's rows
// over it with a register-blocked microkernel, while the next tile's stored bytes are prefetched. So the stored weight
// crosses memory once per call, overlapped with the dot products (the per-panel widening before oneDNN's matmul did not
// overlap, and ran at the machine's memcpy rate).
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

constexpr int64_t kStoredNr = 64;   // output features per sub-tile (4 zmm of 16 f32 accumulators)
constexpr int64_t kStoredNc = 256;  // output features per thread task
// K per tile: a multiple of every block size (32, 256). The tile (kStoredNc x kStoredKc bf16, 512 KB) stays in
// L2 (2 MB a core on Zen 4) while every row block of x runs over it; a longer K-block means fewer passes of
// y's [M, kStoredNc] block through the caches (one load and store per K-block). Measured on Zen 4, one thread,
// M = 256..1280: 1024 ran 2-10% faster than 256 and 0-3% faster than 512.
constexpr int64_t kStoredKc = 1024;

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

// Tests: dequantizes features [n0, n0 + rows) (rows <= kStoredNc), elements [k0, k0 + kc) (kc <= kStoredKc, a
// multiple of 32 and of the block size) of g.w into `tile` (ceil(rows / 64) sub-tiles of kc / 2 * 64 units) in
// the layout above, at the current ISA level.
void dequantize_stored_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile);

// Linear's per_call bf16 products of non-bf16 stored weights use gemm_stored_bf16 (on, the default) or the
// widened panels handed to oneDNN (off): for benchmarks and tests (defined in linear.cc).
void set_linear_stored_gemm(bool on);

// One thread's task: features [n0, n0 + nc) of y over all of K and M. `tile` holds kStoredNc * kStoredKc / 2
// units (64-byte aligned). next_n0: the task this thread likely runs next (its first tile is prefetched during
// the last K-block), or -1.
namespace scalar {
void dequantize_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile);
void gemm_block(const StoredGemm& g, int64_t n0, int64_t nc, int64_t next_n0, uint32_t* tile);
}  // namespace scalar
namespace avx512 {  // needs AVX512_BF16
void dequantize_tile(const StoredGemm& g, int64_t n0, int64_t rows, int64_t k0, int64_t kc, uint32_t* tile);
void gemm_block(const StoredGemm& g, int64_t n0, int64_t nc, int64_t next_n0, uint32_t* tile);
}  // namespace avx512

}  // namespace flux::kernels::detail
