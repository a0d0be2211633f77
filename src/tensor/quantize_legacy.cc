// Row quantizers of the 32-element types q4_0 q4_1 q5_0 q5_1 q8_0: ggml's quantize_row_<type>_ref (the plain
// rounding gguf-py also implements) and quantize_row_<type>_impl (the importance-weighted search that
// stable-diffusion.cpp's convert selects). Source: ggml/src/ggml-quants.c at ggml 8e800cef.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "tensor/quantize_internal.h"

namespace flux::quant_detail {
namespace {

using namespace blocks;

// Stores the 5th bits of 32 levels (element j -> bit j) and their low nibbles (j and j + 16 share qs[j]).
void pack5(const uint8_t* l, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((l[j] & 0x0F) | ((l[j + 16] & 0x0F) << 4));
    qh |= static_cast<uint32_t>((l[j] & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((l[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

// The value of largest magnitude (the first one, on ties), as q4_0/q5_0 pick it.
float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
}

// weight[j] = importance[j] * sqrt(sigma2 + x[j]^2), with sigma2 the mean square of the whole row.
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}
void block_weights(const float* x, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < kQK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, void* out, int64_t n) {
  auto* y = static_cast<Q4_0*>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float d = signed_absmax(x) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    for (int j = 0; j < 16; ++j) {
      // truncation toward zero of v + 8.5, as ggml's (int8_t) cast
      const auto lo = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f))));
      const auto hi = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f))));
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q4_1_ref(const float* x, void* out, int64_t n) {
  auto* y = static_cast<Q4_1*>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float min, max;
    min_max(x, min, max);
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    y[i].m = f2h(min);
    for (int j = 0; j < 16; ++j) {
      const auto lo =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f))));
      const auto hi =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f))));
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q5_0_ref(const float* x, void* out, int64_t n) {
  auto* y = static_cast<Q5_0*>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float d = signed_absmax(x) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    uint8_t l[kQK];
    for (int j = 0; j < kQK; ++j)
      l[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
    pack5(l, y[i].qs, y[i].qh);
  }
}

void quantize_row_q5_1_ref(const float* x, void* out, int64_t n) {
  auto* y = static_cast<Q5_1*>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float min, max;
    min_max(x, min, max);
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    y[i].m = f2h(min);
    uint8_t l[kQK];
    for (int j = 0; j < kQK; ++j) l[j] = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
    pack5(l, y[i].qs, y[i].qh);
  }
}

void quantize_row_q8_0_ref(const float* x, void* out, int64_t n) {
  auto* y = static_cast<Q8_0*>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void quantize_row_q4_0_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q4_0*>(out);
  const float sigma2 = row_sigma2(x, n);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* xb = x + kQK * i;
    float weight[kQK];
    int8_t L[kQK];
    block_weights(xb, importance + kQK * i, sigma2, weight);
    y[i].d = f2h(make_qx_quants(kQK, 8, xb, L, weight));
    for (int j = 0; j < 16; ++j) y[i].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

void quantize_row_q5_0_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Q5_0*>(out);
  const float sigma2 = row_sigma2(x, n);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* xb = x + kQK * i;
    float weight[kQK];
    int8_t L[kQK];
    block_weights(xb, importance + kQK * i, sigma2, weight);
    y[i].d = f2h(make_qx_quants(kQK, 16, xb, L, weight));
    pack5(reinterpret_cast<const uint8_t*>(L), y[i].qs, y[i].qh);
  }
}

// q4_1 (nmax 15) and q5_1 (nmax 31): levels and a min from make_qkx3_quants.
template <typename Block, int nmax>
void quantize_row_x_1_impl(const float* x, void* out, int64_t n, const float* importance) {
  auto* y = static_cast<Block*>(out);
  const float sigma2 = row_sigma2(x, n);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* xb = x + kQK * i;
    float weight[kQK];
    uint8_t L[kQK], Laux[kQK];
    block_weights(xb, importance + kQK * i, sigma2, weight);
    float min;
    const float d = make_qkx3_quants(kQK, nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    y[i].d = f2h(d);
    y[i].m = f2h(-min);
    if constexpr (nmax == 15) {
      for (int j = 0; j < 16; ++j) y[i].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
    } else {
      pack5(L, y[i].qs, y[i].qh);
    }
  }
}

void quantize_row_q4_1_impl(const float* x, void* out, int64_t n, const float* importance) {
  quantize_row_x_1_impl<Q4_1, 15>(x, out, n, importance);
}
void quantize_row_q5_1_impl(const float* x, void* out, int64_t n, const float* importance) {
  quantize_row_x_1_impl<Q5_1, 31>(x, out, n, importance);
}

}  // namespace flux::quant_detail
