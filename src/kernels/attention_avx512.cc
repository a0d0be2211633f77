// The bf16 flash attention's body on AVX512_BF16: Q K^T and P V on vdpbf16ps (bf16 pairs multiplied, summed
// into f32), the online softmax in f32. Compiled with AVX-512 flags; reached only through attention_bf16()
// after attention_bf16_applies() checked cpu_features(). Layouts and tiles: kernels/attention_bf16.h.
//
// One task = one head x up to kBf16Queries query rows. Per key block of kBf16Keys keys:
//   S[rows, bk] = Q K^T       (K tile of 64 keys outer, so it stays in L1 while every row micro-tile uses it)
//   per row: m_new = max(m, max S); P = bf16(exp(scale S - scale m_new)); l = l alpha + sum P (f32, before
//            rounding); alpha = exp(scale (m - m_new))
//   O = alpha O + P V         (64 head dims at a time; O loaded, rescaled, accumulated and stored once)
// and at the end out = O / l.
// No std:: inline functions here (the linker must never pick an AVX-512 copy for a baseline caller).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/attention_bf16.h"

namespace flux::kernels::detail::avx512 {
namespace {

constexpr int64_t R = kBf16Rows, T = kBf16Tile, BK = kBf16Keys;
using u32_alias = uint32_t __attribute__((may_alias));

inline __m512bh as_bh(__m512i x) { return (__m512bh)x; }

// y[0, n) = bf16(x[0, n)), n a multiple of 32.
inline void to_bf16(const float* x, int64_t n, uint16_t* y) {
  for (int64_t i = 0; i < n; i += 32) {
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(y + i, (__m512i)b);
  }
}

// 2^t for t <= 0 (a rounding's worth above is fine): t = n + f, n = round(t), |f| <= 1/2; 2^f by a degree-5
// polynomial fitted for relative error (1.0e-7, far below bf16's 2^-9), 2^n by vscalefps, which flushes
// 2^(t < -149) to 0 without a clamp.
inline __m512 exp2_le0(__m512 t) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.3218672247603536e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.671698324382305e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550893023610115e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022237956523895e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931468844413757e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Transposes a 16 x 16 matrix of 32-bit units in place: r[i] lane c -> r[c] lane i.
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // r[4g + k], 128-bit lane L: rows 4g .. 4g+3 of column 4L + k.
  for (int g = 0; g < 16; g += 4) {
    r[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    r[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88);           // lanes: columns k, 8+k of row groups 0, 1
    t[4 + k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);       // columns 4+k, 12+k of groups 0, 1
    t[8 + k] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);  // ... of groups 2, 3
    t[12 + k] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0xdd);
    r[4 + k] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0x88);
    r[12 + k] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0xdd);
  }
}

// c[R][4] (R rows x 64 columns) += a[R][2 n_pairs] (bf16 rows, lda_pairs bf16 pairs apart) x b, one packed
// [n_pairs][64][2] tile: the inner loop of both products (Q·Kᵀ on a K tile, P·V on a V chunk).
__attribute__((always_inline)) inline void dot_tile(__m512 (&c)[R][4], const uint16_t* a, int64_t lda_pairs,
                                                    const uint16_t* b_tile, int64_t n_pairs) {
  const u32_alias* pairs = reinterpret_cast<const u32_alias*>(a);
  for (int64_t t = 0; t < n_pairs; ++t) {
    const uint16_t* b = b_tile + t * 2 * T;
    const __m512bh b0 = as_bh(_mm512_load_si512(b)), b1 = as_bh(_mm512_load_si512(b + 32));
    const __m512bh b2 = as_bh(_mm512_load_si512(b + 64)), b3 = as_bh(_mm512_load_si512(b + 96));
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512bh x = as_bh(_mm512_set1_epi32(static_cast<int>(pairs[r * lda_pairs + t])));
      c[r][0] = _mm512_dpbf16_ps(c[r][0], x, b0);
      c[r][1] = _mm512_dpbf16_ps(c[r][1], x, b1);
      c[r][2] = _mm512_dpbf16_ps(c[r][2], x, b2);
      c[r][3] = _mm512_dpbf16_ps(c[r][3], x, b3);
    }
  }
}

// s[R][64] (row stride ld_s) = q[R][D] (bf16 rows, stride D) x one packed K tile ([D / 2][64][2]).
inline void qk_tile(const uint16_t* q, int64_t d, const uint16_t* k_tile, float* s, int64_t ld_s) {
  __m512 c[R][4];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) c[r][v] = _mm512_setzero_ps();
  dot_tile(c, q, d / 2, k_tile, d / 2);
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(s + r * ld_s + v * 16, c[r][v]);
}

// o[R][64] (row stride ld_o) = alpha[r] o + p[R][2 n_pairs] (bf16 rows, stride ld_p) x one packed V chunk
// ([n_pairs][64][2]).
inline void pv_tile(const uint16_t* p, int64_t ld_p, const uint16_t* v_chunk, int64_t n_pairs, const float* alpha,
                    float* o, int64_t ld_o) {
  __m512 c[R][4];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) c[r][v] = _mm512_mul_ps(_mm512_loadu_ps(o + r * ld_o + v * 16), a);
  }
  dot_tile(c, p, ld_p / 2, v_chunk, n_pairs);
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(o + r * ld_o + v * 16, c[r][v]);
}

// One row of a key block: s[0, n) raw scores -> p[0, round_up(n, 16)) = bf16(exp(scale s - scale m_new))
// (zero past n); updates m, l and sets alpha.
inline void softmax_row(const float* s, int64_t n, float scale, uint16_t* p, float& m, float& l, float& alpha) {
  const int64_t n_full = n / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - n_full)) - 1u);
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  for (int64_t j = 0; j < n_full; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + j));
  if (tail) vmax = _mm512_mask_max_ps(vmax, tail, vmax, _mm512_maskz_loadu_ps(tail, s + n_full));
  const float row_max = _mm512_reduce_max_ps(vmax);
  const float m_new = m > row_max ? m : row_max;
  // exp(scale (s - m_new)) = 2^(s c - m_new c), c = scale log2(e).
  const float c = scale * 1.44269504088896341f;
  alpha = __builtin_exp2f((m - m_new) * c);  // 0 on the first block (m = -inf)
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m_new * c);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n_full; j += 16) {
    const __m512 e = exp2_le0(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vc, vm));
    sum = _mm512_add_ps(sum, e);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + j), (__m256i)_mm512_cvtneps_pbh(e));
  }
  if (tail) {
    const __m512 e =
        _mm512_maskz_mov_ps(tail, exp2_le0(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, s + n_full), vc, vm)));
    sum = _mm512_add_ps(sum, e);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + n_full), (__m256i)_mm512_cvtneps_pbh(e));
  }
  l = l * alpha + _mm512_reduce_add_ps(sum);
  m = m_new;
}

}  // namespace

void pack_k_bf16(const float* k, int64_t len_k, int64_t d, uint16_t* out) {
  const int64_t n_pairs = d / 2, n_tiles = (len_k + T - 1) / T;
  uint32_t* dst = reinterpret_cast<uint32_t*>(out);  // pairs
  __m512i r[16];
  // Blocks of 16 keys x 16 pairs: rows of pairs in, columns of keys out.
  for (int64_t t = 0; t < n_tiles; ++t) {
    for (int64_t g = 0; g < T; g += 16) {
      for (int64_t pg = 0; pg < n_pairs; pg += 16) {
        for (int64_t i = 0; i < 16; ++i) {
          const int64_t key = t * T + g + i;
          const float* x = k + key * d + 2 * pg;
          r[i] = key < len_k ? (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x))
                             : _mm512_setzero_si512();
        }
        transpose16(r);
        for (int64_t c = 0; c < 16; ++c) _mm512_store_si512(dst + (t * n_pairs + pg + c) * T + g, r[c]);
      }
    }
  }
}

void pack_v_bf16(const float* v, int64_t len_k, int64_t d, uint16_t* out) {
  const int64_t n_kb = (len_k + BK - 1) / BK;
  // Interleaves dims 0-15 (then 16-31) of key rows a (elements 0-31) and b (32-63): a0 b0 a1 b1 ...
  alignas(64) static constexpr uint16_t kLo[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                   8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static constexpr uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                   24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i lo_idx = _mm512_load_si512(kLo), hi_idx = _mm512_load_si512(kHi);
  const auto row32 = [&](int64_t key, int64_t dim) {  // dims [dim, dim + 32) of a key in bf16 (0 past len_k)
    if (key >= len_k) return _mm512_setzero_si512();
    const float* x = v + key * d + dim;
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
  };
  for (int64_t kb = 0; kb < n_kb; ++kb) {
    for (int64_t c = 0; c < d / T; ++c) {
      uint16_t* chunk = out + kb * BK * d + c * BK * T;  // [BK / 2][64][2]
      for (int64_t t = 0; t < BK / 2; ++t) {
        const int64_t key = kb * BK + 2 * t;
        for (int64_t half = 0; half < T; half += 32) {
          const __m512i a = row32(key, c * T + half), b = row32(key + 1, c * T + half);
          _mm512_store_si512(chunk + t * 2 * T + 2 * half, _mm512_permutex2var_epi16(a, lo_idx, b));
          _mm512_store_si512(chunk + t * 2 * T + 2 * half + 32, _mm512_permutex2var_epi16(a, hi_idx, b));
        }
      }
    }
  }
}

void attention_query_block_bf16(const Bf16QueryBlock& t, const Bf16Scratch& w) {
  const int64_t d = t.head_dim, rows = (t.n_rows + R - 1) / R * R;
  for (int64_t r = 0; r < t.n_rows; ++r) to_bf16(t.q + r * d, d, w.q + r * d);
  std::memset(w.q + t.n_rows * d, 0, sizeof(uint16_t) * static_cast<size_t>((rows - t.n_rows) * d));
  std::memset(w.o, 0, sizeof(float) * static_cast<size_t>(rows * d));
  for (int64_t r = 0; r < rows; ++r) {
    w.m[r] = -__builtin_inff();
    w.l[r] = 0.0f;
  }
  const int64_t n_kb = (t.len_k + BK - 1) / BK;
  for (int64_t kb = 0; kb < n_kb; ++kb) {
    const int64_t j0 = kb * BK, bk = t.len_k - j0 < BK ? t.len_k - j0 : BK;
    // S[rows, bk] = Q K^T, one 64-key tile of K at a time.
    for (int64_t kt = 0; kt < (bk + T - 1) / T; ++kt) {
      const uint16_t* k_tile = t.k + (j0 / T + kt) * T * d;
      for (int64_t r = 0; r < rows; r += R) qk_tile(w.q + r * d, d, k_tile, w.s + r * BK + kt * T, BK);
    }
    for (int64_t r = 0; r < rows; ++r) softmax_row(w.s + r * BK, bk, t.scale, w.p + r * BK, w.m[r], w.l[r], w.alpha[r]);
    // O = alpha O + P V, 64 head dims at a time.
    const int64_t n_pairs = (bk + 1) / 2;
    for (int64_t c = 0; c < d / T; ++c) {
      const uint16_t* v_chunk = t.v + kb * BK * d + c * BK * T;
      for (int64_t r = 0; r < rows; r += R)
        pv_tile(w.p + r * BK, BK, v_chunk, n_pairs, w.alpha + r, w.o + r * d + c * T, d);
    }
  }
  for (int64_t r = 0; r < t.n_rows; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / w.l[r]);
    for (int64_t j = 0; j < d; j += 16)
      _mm512_storeu_ps(t.out + r * t.ld_out + j, _mm512_mul_ps(_mm512_loadu_ps(w.o + r * d + j), inv));
  }
}

}  // namespace flux::kernels::detail::avx512
