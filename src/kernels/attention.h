// Scaled dot-product attention and rotary embeddings, F32 in and out.
// The attention never materialises the full [len_q, len_k] score matrix for all heads at once: it works on
// blocks of query rows with an online softmax (flash-attention style), so memory is O(block * len_k).
// Two precisions of the products: f32 (exact path, every ISA, masks and bias) and, asked with
// AttentionParams::bf16, Q K^T and P V on bf16 dot products (AVX512_BF16) with the softmax in f32.
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
  // Q, K, V and the probabilities P rounded to bf16 for the two products (f32 accumulation, softmax in f32):
  // about 2x the f32 speed, relative error ~1e-3. Taken only where the CPU (as capped) has AVX512_BF16, with
  // no mask and no bias, scale > 0, head_dim a multiple of 64, and FLUX_ATTENTION_BF16 is not 0; otherwise
  // (silently) the f32 path. What FLUX's transformer asks for when its products run in bf16.
  bool bf16 = false;
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

// FLUX's QKNorm and RoPE in the pass that writes attention's Q (or K): for token l < len and head h < n_heads,
//   y[h, l, :] = rope_l(x[l, h*D : (h+1)*D] / sqrt(mean(x^2) + eps) * gamma)     (D = head_dim, even)
// x: token l's heads at x + l * ld_x (e.g. the q or k columns of a qkv projection); y: [n_heads, ld_y, D], the
// layout attention() reads, rows [0, len) of each head written (ld_y >= len: a part of a longer sequence);
// gamma: [D]; cos, sin: [len, D / 2] as for rope(). The operations of rms_norm then rope, per head in one pass.
void rms_norm_rope(const float* x, int64_t ld_x, int64_t len, int64_t n_heads, int64_t head_dim, const float* gamma,
                   float eps, const float* cos, const float* sin, float* y, int64_t ld_y);

namespace reference {
void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* out);
// The bf16 path's plain twin (p.bf16 ignored; no mask, no bias), in double: scores s = scale bf16(q) . bf16(k);
// an online softmax over the kernel's blocks of keys (512) with P = bf16(exp(s - running max)), so P rounds
// as in the kernel; out = sum P bf16(v) / sum exp (the sum of the unrounded exps).
void attention_bf16(const AttentionParams& p, const float* q, const float* k, const float* v, float* out);
void rope(float* x, int64_t n_heads, int64_t len, int64_t head_dim, const float* cos, const float* sin);
// reference::rms_norm of each head's row into y, then reference::rope.
void rms_norm_rope(const float* x, int64_t ld_x, int64_t len, int64_t n_heads, int64_t head_dim, const float* gamma,
                   float eps, const float* cos, const float* sin, float* y, int64_t ld_y);
}  // namespace reference

}  // namespace flux::kernels
