// Packing a Linear's weight (storage form [N, K]: f32, bf16, f16, f8_e4m3 or a ggml block type) into the
// blocked layout oneDNN's matmul prefers for the [K, N] operand. Two ways to the same bytes:
//  - direct: each thread widens a tile of 64 output features x a few hundred K into L1 (dequantize_row,
//    convert_*: the very functions the two-pass path calls) and transposes it into the blocked layout, so
//    the weight crosses memory once;
//  - two-pass (the fallback for layouts the direct packer does not know): widen whole rows into a plain
//    [width, K] scratch, then oneDNN's reorder from format "ba" into the blocked layout.
// Only src/kernels/*.cc and their tests include this header (it exposes oneDNN types).
#pragma once

#include <cstdint>
#include <dnnl.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/aligned_buffer.h"
#include "tensor/tensor.h"

namespace flux::kernels::detail {

dnnl::engine& dnnl_cpu_engine();

// The layout oneDNN picks for a [k, width] weight in `compute` (f32 or bf16) with format "any", asked at
// M = 1024 (the per-M primitives then take it as given).
dnnl::memory::desc linear_weight_layout(int64_t k, int64_t width, DType compute, bool with_bias);

// A blocked [K, N] layout the direct packer writes. K is cut in blocks of kb = ku * vnni elements, N in blocks
// of nb; a block is [ku][nb][vnni], so element (k, n) lives at
//   (k / kb) * k_stride + (n / nb) * n_stride + (k % kb / vnni) * nb * vnni + (n % nb) * vnni + k % vnni
// (elements). vnni elements make one 32-bit unit, so a block is a [ku][nb] matrix of units, the transpose of
// the [nb][ku] units a tile of weight rows holds. oneDNN 2.6 on AVX-512: BA16a64b2a for bf16 (ku 16,
// nb 64, vnni 2), BA16a64b for f32 (vnni 1). Padding (k >= K or n >= N) is zero, as oneDNN's reorder leaves it.
struct PackLayout {
  DType dtype = DType::f32;  // f32 (vnni 1) or bf16 (vnni 2)
  int64_t k = 0, n = 0;      // logical [K, N]
  int64_t padded_k = 0, padded_n = 0;
  int64_t ku = 0, nb = 0, vnni = 0;
  int64_t k_stride = 0, n_stride = 0;  // elements between consecutive K blocks / N blocks
  int64_t kb() const { return ku * vnni; }
};

// md as a PackLayout, or nullopt (with the reason in `why`) when the direct packer cannot write it.
std::optional<PackLayout> recognise_pack_layout(const dnnl::memory::desc& md, std::string* why = nullptr);

// Packs rows [0, l.n) of a storage-form weight (`rows`: l.n rows of l.k elements of `from`, row-major) into
// `out` (l's layout, padding included). Threaded over tiles with parallel_for.
void pack_direct(const PackLayout& l, DType from, const void* rows, void* out);

// The two-pass path: rows as above -> `plain` ([n, k] in md's data type) -> oneDNN reorder into md's layout.
void pack_two_pass(const dnnl::memory::desc& md, DType from, const void* rows, AlignedBuffer& plain, void* out);

// Tests: the packed bytes of output features [n0, n0 + width) of w in oneDNN's layout for `compute` (f32 or
// bf16), through the direct packer (direct; false if it does not know the layout) or the two-pass path.
// `out` is poisoned first, so unwritten padding shows.
bool pack_linear_panel(const Tensor& w, DType compute, int64_t n0, int64_t width, bool direct,
                       std::vector<uint8_t>& out);

// The per-ISA transpose at the heart of pack_direct. tile: `rows` rows of n_blocks * ku 32-bit units, row
// stride ld units; writes those rows' columns of n_blocks blocks, block b at out + b * k_stride units (rows
// nb units long): out[b * k_stride + j * nb + r] = tile[r * ld + b * ku + j] for r < rows, j < ku.
namespace scalar {
void pack_tile(const uint32_t* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
               int64_t k_stride, uint32_t* out);
}
namespace avx2 {  // rows and ku multiples of 8
void pack_tile(const uint32_t* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
               int64_t k_stride, uint32_t* out);
}
namespace avx512 {  // rows and ku multiples of 16
void pack_tile(const uint32_t* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
               int64_t k_stride, uint32_t* out);
// pack_tile from a tile of floats (two per unit; ld in floats) rounded to bf16 pairs by vcvtne2ps2bf16. That
// equals what the two-pass path gets from convert_f32_to_bf16 at this level (vcvtneps2bf16, and f32_to_bf16
// for a row's last n % 16 values) for every f32 but subnormals, which widened f16, f8 and ggml blocks never
// give (their values are 0 or at least 2^-24 in magnitude). Needs AVX512_BF16.
void pack_tile_bf16(const float* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                    int64_t k_stride, uint32_t* out);
// The same from f16 or f8_e4m3 weight rows where they lie (ld in elements): each value widened exactly to
// f32 (vcvtph2ps, as avx512::convert_f16_to_f32; f8 from a table of f8e4m3_to_f32), then rounded as above.
void pack_tile_f16(const uint16_t* rows_f16, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                   int64_t k_stride, uint32_t* out);
void pack_tile_f8(const uint8_t* rows_f8, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                  int64_t k_stride, uint32_t* out);
// The same straight from weight rows of a ggml block type (`rows` at a whole block, rows row_bytes apart; ku a
// multiple of 16, for the K-quants of 128 (whole super-blocks), n_rows of 16): each value dequantized with the float
// operations of quant_body.h (so exactly as dequantize_row at this level), then rounded as above. Writes one block
// of ku units: out[j * nb + r]. Takes q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K and q6_K; false (nothing written)
// for the others.
bool pack_tile_blocks(DType dtype, const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb,
                      uint32_t* out);
}  // namespace avx512

}  // namespace flux::kernels::detail
