// Scaled dot-product attention and rotary embeddings, F32.
// The attention never materialises the full [len_q, len_k] score matrix for all heads at once: it works on
// blocks of query rows with an online softmax (flash-attention style), so memory is O(block * len_k).
#pragma once

#include <cstdint>

namespace flux::kernels {

struct AttentionParams {
  int64_t n_heads = 0;
  int64_t len_q = 0;
  int64_t len_k = 0;
  int64_t head_dim = 0;
  float scale = 0.0f;           // multiplies q.k; usually 1/sqrt(head_dim); T5 uses 1
  bool causal = false;          // query i sees keys 0..i (CLIP)
  const float* bias = nullptr;  // optional additive bias [n_heads, len_q, len_k] (T5 relative positions)
};

// q: [n_heads, len_q, head_dim], k, v: [n_heads, len_k, head_dim]; out: [len_q, n_heads * head_dim]
// (heads merged, ready for the output projection).
void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* out);

// Rotary embedding on ADJACENT pairs (FLUX's apply_rope): for each head h, position l, pair j:
//   (x0, x1) = x[h, l, 2j], x[h, l, 2j+1]
//   x[h, l, 2j]   = cos[l, j] * x0 - sin[l, j] * x1
//   x[h, l, 2j+1] = sin[l, j] * x0 + cos[l, j] * x1
// x: [n_heads, len, head_dim] in place; cos, sin: [len, head_dim / 2].
void rope(float* x, int64_t n_heads, int64_t len, int64_t head_dim, const float* cos, const float* sin);

namespace reference {
void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* out);
void rope(float* x, int64_t n_heads, int64_t len, int64_t head_dim, const float* cos, const float* sin);
}  // namespace reference

}  // namespace flux::kernels
