// Row quantizers of the k-quants q2_K q3_K q4_K q5_K q6_K: ggml's quantize_row_<type>_impl, the
// importance-weighted search (ggml/src/ggml-quants.c at ggml 8e800cef). Each super-block of 256 values:
// levels and a scale (and a min) per sub-block, then the sub-block scales themselves quantized to 4/6/8 bits
// against one f16 `d` (and `dmin`), then the levels requantized against the stored scales.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/quantize_internal.h"

namespace flux::quant_detail {
namespace {

using namespace blocks;

float block_sum_x2(const float* x) {
  float s = 0;
  for (int l = 0; l < kQK_K; ++l) s += x[l] * x[l];
  return s;
}

// Sub-block weights importance[l] * sqrt(sigma2 + x[l]^2); returns their sum.
float sub_weights(const float* x, const float* qw, float sigma2, int n, float* weight) {
  for (int l = 0; l < n; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[l] * x[l]);
  float sum = 0;
  for (int l = 0; l < n; ++l) sum += weight[l];
  return sum;
}

// Four 2-bit levels per byte: qs[32 h + l] holds L[128 h + l + 32 s] at bits 2s (s = 0..3).
void pack2(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] =
          static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
  }
}

// q4_K / q5_K: 8 6-bit scales and mins in 12 bytes (the inverse of scale_min_k4).
void pack_scales_k4(const uint8_t* Ls, const uint8_t* Lm, uint8_t* scales) {
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = Ls[j], lm = Lm[j];
    if (j < 4) {
      scales[j] = ls;
      scales[j + 4] = lm;
    } else {
      scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
}

// q4_K (nmax 15) and q5_K (nmax 31) up to the levels L[256]; writes d, dmin and scales.
template <typename Block>
void quantize_k4_levels(const float* x, Block& y, const float* qw, int nmax, uint8_t* L) {
  uint8_t Laux[32], Ls[8], Lm[8];
  float weights[32], sw[8], mins[8], scales[8];
  const float sigma2 = 2 * block_sum_x2(x) / kQK_K;
  for (int j = 0; j < 8; ++j) {
    sw[j] = sub_weights(x + 32 * j, qw + 32 * j, sigma2, 32, weights);
    scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  const float d_block = make_qp_quants(8, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(8, 63, mins, Lm, sw);
  if (nmax == 31) {  // ggml clamps the 6-bit fields in q5_K only
    for (int j = 0; j < 8; ++j) {
      Ls[j] = std::min<uint8_t>(63, Ls[j]);
      Lm[j] = std::min<uint8_t>(63, Lm[j]);
    }
  }
  pack_scales_k4(Ls, Lm, y.scales);
  y.d = f2h(d_block);
  y.dmin = f2h(m_block);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, y.scales, sc, m);
    const float d = h2f(y.d) * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = h2f(y.dmin) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

void quantize_row_q2_K_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q2_K*>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    const float* qw = importance + kQK_K * i;
    uint8_t L[kQK_K], Laux[16], Ls[16], Lm[16];
    float mins[16], scales[16], sw[16], weight[16];
    const float sigma2 = block_sum_x2(x) / kQK_K;
    for (int j = 0; j < 16; ++j) {
      sw[j] = sub_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
      scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    y[i].d = f2h(make_qp_quants(16, 15, scales, Ls, sw));
    y[i].dmin = f2h(make_qp_quants(16, 15, mins, Lm, sw));
    const float dm = h2f(y[i].d), mm = h2f(y[i].dmin);
    for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    for (int j = 0; j < 16; ++j) {
      const float d = dm * static_cast<float>(y[i].scales[j] & 0xF);
      if (d == 0) continue;
      const float m = mm * static_cast<float>(y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + m) / d);
        L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack2(L, y[i].qs);
  }
}

void quantize_row_q3_K_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q3_K*>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    const float* qw = importance + kQK_K * i;
    int8_t L[kQK_K], Ls[16];
    float scales[16], sw[16], weight[16];
    const float sigma2 = 2 * block_sum_x2(x) / kQK_K;
    for (int j = 0; j < 16; ++j) {
      sw[j] = sub_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    std::memset(y[i].scales, 0, 12);
    const float d_block = make_qx_quants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) {  // 16 6-bit values: low nibbles in bytes 0..7, high 2 bits in 8..11
      const int l = Ls[j];
      if (j < 8) {
        y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
      } else {
        y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
      }
      y[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
    }
    y[i].d = f2h(d_block);
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(y[i].d) * static_cast<float>(q3_k_scale(y[i].scales, j));
      if (d == 0) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    // High bit of level j: hmask[j % 32] bit j / 32; the low 2 bits as in q2_K.
    std::memset(y[i].hmask, 0, 32);
    uint8_t low[kQK_K];
    for (int j = 0; j < kQK_K; ++j) {
      int l = L[j];
      if (l > 3) {
        y[i].hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
        l -= 4;
      }
      low[j] = static_cast<uint8_t>(l);
    }
    pack2(low, y[i].qs);
  }
}

void quantize_row_q4_K_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q4_K*>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K];
    quantize_k4_levels(x, y[i], importance + kQK_K * i, 15, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + l + 32] << 4));
  }
}

void quantize_row_q5_K_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q5_K*>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K];
    quantize_k4_levels(x, y[i], importance + kQK_K * i, 31, L);
    std::memset(y[i].qh, 0, 32);
    for (int c = 0; c < 4; ++c) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[64 * c + j], l2 = L[64 * c + j + 32];
        if (l1 > 15) {
          l1 -= 16;
          y[i].qh[j] |= static_cast<uint8_t>(1u << (2 * c));
        }
        if (l2 > 15) {
          l2 -= 16;
          y[i].qh[j] |= static_cast<uint8_t>(2u << (2 * c));
        }
        y[i].qs[32 * c + j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
  }
}

void quantize_row_q6_K_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q6_K*>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    int8_t L[kQK_K];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      // ggml passes the importance itself as the weights here (not importance * sqrt(sigma2 + x^2)).
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, importance + kQK_K * i + 16 * ib);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(Q6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = f2h(1 / iscale);
    for (int ib = 0; ib < 16; ++ib)
      y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(y[i].d) * static_cast<float>(y[i].scales[j]);
      if (d == 0) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    // ql: low nibbles (elements l and l + 64 of each half share a byte); qh: 2 high bits, four per byte.
    for (int h = 0; h < 2; ++h) {
      const int8_t* Lh = L + 128 * h;
      uint8_t* ql = y[i].ql + 64 * h;
      uint8_t* qh = y[i].qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                     ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace flux::quant_detail
