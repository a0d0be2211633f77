// The SIMD dequantizers, written once over a W-lane vector type V (W = 8 for AVX2, 16 for AVX-512) and
// instantiated by quant_avx2.cc and quant_avx512.cc with a V of their own (in an anonymous namespace, so each
// ISA's instantiations stay in its file). Each lane computes what the scalar
// twin (quant.cc) computes, with the same float operations in the same order: integer unpacking, one
// int -> float conversion, then the products and sums of ggml's formulas. Only those two files include it.
//
// V provides: W; I (W int32 lanes), F (W floats); load_u8 / load_i8 (W bytes, zero / sign extended),
// set1, iota(start) (lanes start, start+1, ...), and_c, srl (by a uniform count), sll, srlv (per-lane count),
// add, sub_c, cvt (int -> float), set1f, mul, add_f, sub_f, store.
#pragma once

#include <cstring>

#include "base/error.h"
#include "tensor/convert.h"
#include "tensor/quant_blocks.h"

namespace flux::quant_body {

using namespace blocks;

template <class V>
void q4_0(const Q4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto d = V::set1f(f16_to_f32(x[i].d));
    for (int j = 0; j < 16; j += V::W) {
      const auto q = V::load_u8(x[i].qs + j);
      V::store(y + j, V::mul(V::cvt(V::sub_c(V::and_c(q, 0xF), 8)), d));
      V::store(y + j + 16, V::mul(V::cvt(V::sub_c(V::srl(q, 4), 8)), d));
    }
  }
}

template <class V>
void q4_1(const Q4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto d = V::set1f(f16_to_f32(x[i].d)), m = V::set1f(f16_to_f32(x[i].m));
    for (int j = 0; j < 16; j += V::W) {
      const auto q = V::load_u8(x[i].qs + j);
      V::store(y + j, V::add_f(V::mul(V::cvt(V::and_c(q, 0xF)), d), m));
      V::store(y + j + 16, V::add_f(V::mul(V::cvt(V::srl(q, 4)), d), m));
    }
  }
}

// q5_0 (Block = Q5_0, offset 16) and q5_1 (Q5_1, y = x * d + m).
template <class V, class Block>
void q5(const Block* x, float* y, int64_t nb) {
  constexpr bool with_min = sizeof(Block) == sizeof(Q5_1);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto d = V::set1f(f16_to_f32(x[i].d));
    auto m = V::set1f(0.0f);
    if constexpr (with_min) m = V::set1f(f16_to_f32(x[i].m));
    uint32_t h;
    std::memcpy(&h, x[i].qh, 4);
    const auto hv = V::set1(static_cast<int>(h));
    for (int j = 0; j < 16; j += V::W) {
      const auto q = V::load_u8(x[i].qs + j);
      auto x0 = V::add(V::and_c(q, 0xF), V::sll(V::and_c(V::srlv(hv, V::iota(j)), 1), 4));
      auto x1 = V::add(V::srl(q, 4), V::sll(V::and_c(V::srlv(hv, V::iota(j + 16)), 1), 4));
      if constexpr (with_min) {
        V::store(y + j, V::add_f(V::mul(V::cvt(x0), d), m));
        V::store(y + j + 16, V::add_f(V::mul(V::cvt(x1), d), m));
      } else {
        V::store(y + j, V::mul(V::cvt(V::sub_c(x0, 16)), d));
        V::store(y + j + 16, V::mul(V::cvt(V::sub_c(x1, 16)), d));
      }
    }
  }
}

template <class V>
void q8_0(const Q8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto d = V::set1f(f16_to_f32(x[i].d));
    for (int j = 0; j < 32; j += V::W) V::store(y + j, V::mul(V::cvt(V::load_i8(x[i].qs + j)), d));
  }
}

template <class V>
void q2_k(const Q2_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    int is = 0;
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {
        for (int part = 0; part < 2; ++part, y += 16) {
          const uint8_t sc = x[i].scales[is++];
          const auto dl = V::set1f(d * static_cast<float>(sc & 0xF));
          const auto ml = V::set1f(dmin * static_cast<float>(sc >> 4));
          const uint8_t* q = x[i].qs + 32 * h + 16 * part;
          for (int l = 0; l < 16; l += V::W) {
            const auto v = V::and_c(V::srl(V::load_u8(q + l), 2 * s), 3);
            V::store(y + l, V::sub_f(V::mul(dl, V::cvt(v)), ml));
          }
        }
      }
    }
  }
}

template <class V>
void q3_k(const Q3_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    int is = 0;
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {
        for (int part = 0; part < 2; ++part, y += 16) {
          const auto dl = V::set1f(d * static_cast<float>(q3_k_scale(x[i].scales, is++)));
          const uint8_t* q = x[i].qs + 32 * h + 16 * part;
          const uint8_t* hm = x[i].hmask + 16 * part;
          for (int l = 0; l < 16; l += V::W) {
            // q - (bit ? 0 : 4) = q + 4 * bit - 4
            const auto bit = V::and_c(V::srl(V::load_u8(hm + l), 4 * h + s), 1);
            const auto v = V::sub_c(V::add(V::and_c(V::srl(V::load_u8(q + l), 2 * s), 3), V::sll(bit, 2)), 4);
            V::store(y + l, V::mul(dl, V::cvt(v)));
          }
        }
      }
    }
  }
}

// q4_K (five = false) and q5_K (five = true).
template <class V, bool five, class Block>
void q45_k(const Block* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = x[i].qs + 32 * c;
      for (int half = 0; half < 2; ++half, y += 32) {
        uint8_t sc, mn;
        scale_min_k4(2 * c + half, x[i].scales, sc, mn);
        const auto d1 = V::set1f(d * static_cast<float>(sc)), m1 = V::set1f(dmin * static_cast<float>(mn));
        for (int l = 0; l < 32; l += V::W) {
          const auto b = V::load_u8(q + l);
          auto v = half ? V::srl(b, 4) : V::and_c(b, 0xF);
          if constexpr (five) {
            const uint8_t* qh = reinterpret_cast<const uint8_t*>(x[i].qh);
            v = V::add(v, V::sll(V::and_c(V::srl(V::load_u8(qh + l), 2 * c + half), 1), 4));
          }
          V::store(y + l, V::sub_f(V::mul(d1, V::cvt(v)), m1));
        }
      }
    }
  }
}

template <class V>
void q6_k(const Q6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int n = 0; n < 2; ++n, y += 128) {
      const uint8_t* ql = x[i].ql + 64 * n;
      const uint8_t* qh = x[i].qh + 32 * n;
      const int8_t* sc = x[i].scales + 8 * n;
      for (int l = 0; l < 32; l += V::W) {
        const int is = l / 16;
        const auto lo = V::load_u8(ql + l), hi = V::load_u8(ql + l + 32), h = V::load_u8(qh + l);
        const auto q1 = V::sub_c(V::add(V::and_c(lo, 0xF), V::sll(V::and_c(h, 3), 4)), 32);
        const auto q2 = V::sub_c(V::add(V::and_c(hi, 0xF), V::sll(V::and_c(V::srl(h, 2), 3), 4)), 32);
        const auto q3 = V::sub_c(V::add(V::srl(lo, 4), V::sll(V::and_c(V::srl(h, 4), 3), 4)), 32);
        const auto q4 = V::sub_c(V::add(V::srl(hi, 4), V::sll(V::srl(h, 6), 4)), 32);
        // (d * sc) * q, as ggml's `d * sc[is] * q` evaluates
        V::store(y + l, V::mul(V::set1f(d * static_cast<float>(sc[is])), V::cvt(q1)));
        V::store(y + l + 32, V::mul(V::set1f(d * static_cast<float>(sc[is + 2])), V::cvt(q2)));
        V::store(y + l + 64, V::mul(V::set1f(d * static_cast<float>(sc[is + 4])), V::cvt(q3)));
        V::store(y + l + 96, V::mul(V::set1f(d * static_cast<float>(sc[is + 6])), V::cvt(q4)));
      }
    }
  }
}

// The dispatch on dtype; `n` has been checked to be whole blocks by the caller (quant.cc).
template <class V>
void dequantize(DType dtype, const void* src, float* dst, int64_t n) {
  const int64_t nb = n / dtype_block_size(dtype);
  switch (dtype) {
    case DType::q4_0:
      return q4_0<V>(static_cast<const Q4_0*>(src), dst, nb);
    case DType::q4_1:
      return q4_1<V>(static_cast<const Q4_1*>(src), dst, nb);
    case DType::q5_0:
      return q5<V>(static_cast<const Q5_0*>(src), dst, nb);
    case DType::q5_1:
      return q5<V>(static_cast<const Q5_1*>(src), dst, nb);
    case DType::q8_0:
      return q8_0<V>(static_cast<const Q8_0*>(src), dst, nb);
    case DType::q2_K:
      return q2_k<V>(static_cast<const Q2_K*>(src), dst, nb);
    case DType::q3_K:
      return q3_k<V>(static_cast<const Q3_K*>(src), dst, nb);
    case DType::q4_K:
      return q45_k<V, false>(static_cast<const Q4_K*>(src), dst, nb);
    case DType::q5_K:
      return q45_k<V, true>(static_cast<const Q5_K*>(src), dst, nb);
    case DType::q6_K:
      return q6_k<V>(static_cast<const Q6_K*>(src), dst, nb);
    default:
      fail("dequantize_row: ", dtype_name(dtype), " is not a quantized dtype");
  }
}

}  // namespace flux::quant_body
