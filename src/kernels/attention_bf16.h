// The bf16 flash attention's internals, shared by its driver (attention_bf16.cc: buffers, packing, threads)
// and its AVX-512 body (attention_avx512.cc: AVX512_BF16 dot products, reached only after cpu_features()).
// Not part of the public API: only src/kernels/*.cc include it.
//
// Layouts (u16 = one bf16; a "pair" = two bf16 in one 32-bit unit, what vdpbf16ps multiplies and adds):
//   K of one head, packed once per call:   [ceil(len_k / 64) key tiles][D / 2 pairs][64 keys][2]
//   V of one head, per block of kKeys:     [n_kb blocks][D / 64 dim chunks][kKeys / 2 key pairs][64 dims][2]
// Padding keys are zero in both, so they add nothing to a product; the softmax masks their scores.
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace flux::kernels::detail {

// Tiles. A micro-tile is kRows query rows x 64 keys (Q K^T) or x 64 head dims (P V): 24 zmm accumulators.
constexpr int64_t kBf16Rows = 6;      // query rows per micro-tile
constexpr int64_t kBf16Tile = 64;     // keys per K tile, dims per V chunk
constexpr int64_t kBf16Keys = 512;    // keys per softmax block (a multiple of kBf16Tile)
constexpr int64_t kBf16Queries = 96;  // query rows per task (a multiple of kBf16Rows)

// Whether attention() may take the bf16 path for p: asked for (p.bf16), FLUX_ATTENTION_BF16 is not 0, the CPU
// (as capped) has AVX512_BF16, no mask or bias, scale > 0, head_dim a multiple of 64.
bool attention_bf16_applies(const AttentionParams& p);
// The bf16 path (attention_bf16_applies(p) must hold).
void attention_bf16(const AttentionParams& p, const float* q, const float* k, const float* v, float* out);

// One task: a block of query rows of one head against all its keys.
struct Bf16QueryBlock {
  const float* q = nullptr;     // [n_rows, head_dim] f32, row stride head_dim
  int64_t n_rows = 0;           // <= kBf16Queries
  const uint16_t* k = nullptr;  // this head's packed K
  const uint16_t* v = nullptr;  // this head's packed V
  int64_t len_k = 0, head_dim = 0;
  float scale = 0.0f;
  float* out = nullptr;  // [n_rows, head_dim] f32, row stride ld_out
  int64_t ld_out = 0;
};

// A task's scratch, 64-byte aligned, reused across tasks (sizes from bf16_scratch_bytes).
struct Bf16Scratch {
  uint16_t* q = nullptr;   // [kBf16Queries][head_dim]  Q rows in bf16 (rows past n_rows zero)
  float* s = nullptr;      // [kBf16Queries][kBf16Keys] scores of one key block
  uint16_t* p = nullptr;   // [kBf16Queries][kBf16Keys] probabilities in bf16
  float* o = nullptr;      // [kBf16Queries][head_dim]  unnormalised output
  float* m = nullptr;      // [kBf16Queries]            running max (raw score units)
  float* l = nullptr;      // [kBf16Queries]            running sum of exp
  float* alpha = nullptr;  // [kBf16Queries]            this block's rescale of o
};

namespace avx512 {
// k: [len_k, head_dim] f32 -> the packed K layout above (all key tiles of one head).
void pack_k_bf16(const float* k, int64_t len_k, int64_t head_dim, uint16_t* out);
// v: [len_k, head_dim] f32 -> the packed V layout above (all key blocks of one head).
void pack_v_bf16(const float* v, int64_t len_k, int64_t head_dim, uint16_t* out);
void attention_query_block_bf16(const Bf16QueryBlock& t, const Bf16Scratch& scratch);
}  // namespace avx512

}  // namespace flux::kernels::detail
