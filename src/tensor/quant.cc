// Scalar dequantizers: ggml's dequantize_row_<type> (ggml/src/ggml-quants.c at ggml 8e800cef) with the same
// float32 evaluation order. Compiled with -ffp-contract=off (src/tensor/CMakeLists.txt): `x * d + m` must not
// become an FMA, or results differ from ggml by an ulp.
#include "tensor/quant.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "base/cpu.h"
#include "base/error.h"
#include "tensor/convert.h"
#include "tensor/quant_blocks.h"

namespace flux {
namespace {

using namespace blocks;

float h2f(uint16_t h) { return f16_to_f32(h); }

void q4_0(const Q4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((x[i].qs[j] & 0xF) - 8) * d;
      y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void q4_1(const Q4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(x[i].d), m = h2f(x[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(x[i].qs[j] & 0xF) * d + m;
      y[j + 16] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

template <typename Block>
void q5(const Block* x, float* y, int64_t nb, bool with_min) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(x[i].d);
    float m = 0;
    if constexpr (std::is_same_v<Block, Q5_1>) m = h2f(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    const int offset = with_min ? 0 : 16;
    for (int j = 0; j < 16; ++j) {
      const int x0 = ((x[i].qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4)) - offset;
      const int x1 = ((x[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4)) - offset;
      if (with_min) {
        y[j] = static_cast<float>(x0) * d + m;
        y[j + 16] = static_cast<float>(x1) * d + m;
      } else {
        y[j] = static_cast<float>(x0) * d;
        y[j + 16] = static_cast<float>(x1) * d;
      }
    }
  }
}

void q8_0(const Q8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(x[i].d);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void q2_k(const Q2_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
    int is = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[i].qs + 32 * h;
      for (int s = 0; s < 4; ++s) {
        for (int part = 0; part < 2; ++part) {
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * part] >> (2 * s)) & 3) - ml;
        }
      }
    }
  }
}

void q3_k(const Q3_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d);
    int is = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[i].qs + 32 * h;
      for (int s = 0; s < 4; ++s) {
        const uint8_t mb = static_cast<uint8_t>(1u << (4 * h + s));
        for (int part = 0; part < 2; ++part) {
          const float dl = d * static_cast<float>(q3_k_scale(x[i].scales, is++));
          for (int l = 16 * part; l < 16 * part + 16; ++l) {
            const int v = ((q[l] >> (2 * s)) & 3) - ((x[i].hmask[l] & mb) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

template <typename Block>
void q45_k(const Block* x, float* y, int64_t nb) {
  constexpr bool five = std::is_same_v<Block, Q5_K>;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = x[i].qs + 32 * c;
      for (int half = 0; half < 2; ++half) {
        uint8_t sc, mn;
        scale_min_k4(2 * c + half, x[i].scales, sc, mn);
        const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
        for (int l = 0; l < 32; ++l) {
          int v = half ? q[l] >> 4 : q[l] & 0xF;
          if constexpr (five) v += ((x[i].qh[l] >> (2 * c + half)) & 1) ? 16 : 0;
          *y++ = d1 * static_cast<float>(v) - m1;
        }
      }
    }
  }
}

void q6_k(const Q6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d);
    for (int n = 0; n < 2; ++n, y += 128) {
      const uint8_t* ql = x[i].ql + 64 * n;
      const uint8_t* qh = x[i].qh + 32 * n;
      const int8_t* sc = x[i].scales + 8 * n;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void check_row(DType dtype, int64_t n) {
  FLUX_CHECK(n >= 0 && n % dtype_block_size(dtype) == 0, "dequantize_row: ", n, " elements of ", dtype_name(dtype),
             " are not a whole number of ", dtype_block_size(dtype), "-element blocks");
}

}  // namespace

namespace scalar {
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n) {
  check_row(dtype, n);
  const int64_t nb = n / dtype_block_size(dtype);
  switch (dtype) {
    case DType::q4_0:
      return q4_0(static_cast<const Q4_0*>(src), dst, nb);
    case DType::q4_1:
      return q4_1(static_cast<const Q4_1*>(src), dst, nb);
    case DType::q5_0:
      return q5(static_cast<const Q5_0*>(src), dst, nb, false);
    case DType::q5_1:
      return q5(static_cast<const Q5_1*>(src), dst, nb, true);
    case DType::q8_0:
      return q8_0(static_cast<const Q8_0*>(src), dst, nb);
    case DType::q2_K:
      return q2_k(static_cast<const Q2_K*>(src), dst, nb);
    case DType::q3_K:
      return q3_k(static_cast<const Q3_K*>(src), dst, nb);
    case DType::q4_K:
      return q45_k(static_cast<const Q4_K*>(src), dst, nb);
    case DType::q5_K:
      return q45_k(static_cast<const Q5_K*>(src), dst, nb);
    case DType::q6_K:
      return q6_k(static_cast<const Q6_K*>(src), dst, nb);
    case DType::f32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::f16:
      return scalar::convert_f16_to_f32(static_cast<const uint16_t*>(src), dst, static_cast<size_t>(n));
    case DType::bf16:
      return scalar::convert_bf16_to_f32(static_cast<const uint16_t*>(src), dst, static_cast<size_t>(n));
    default:
      fail("dequantize_row: unsupported dtype ", dtype_name(dtype));
  }
}
}  // namespace scalar

void dequantize_row(DType dtype, const void* src, float* dst, int64_t n) {
  if (!is_quantized(dtype)) {
    FLUX_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, "dequantize_row: unsupported dtype ",
               dtype_name(dtype));
    return convert_to_f32(dtype, src, dst, static_cast<size_t>(n));
  }
  check_row(dtype, n);
  switch (isa_level()) {
    case IsaLevel::avx512:
      return avx512::dequantize_row(dtype, src, dst, n);
    case IsaLevel::avx2:
      return avx2::dequantize_row(dtype, src, dst, n);
    case IsaLevel::scalar:
      return scalar::dequantize_row(dtype, src, dst, n);
  }
}

void dequantize_row_bf16(DType dtype, const void* src, uint16_t* dst, int64_t n) {
  if (dtype == DType::bf16) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 2);
    return;
  }
  check_row(dtype, n);
  // Whole blocks at a time through an f32 buffer that stays in L1.
  constexpr int64_t kChunk = 1024;  // a multiple of every block size
  alignas(64) float buf[kChunk];
  const size_t bytes_per_chunk = dtype_nbytes(dtype, kChunk);
  const auto* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; i += kChunk, s += bytes_per_chunk) {
    const int64_t len = std::min(kChunk, n - i);
    dequantize_row(dtype, s, buf, len);
    convert_f32_to_bf16(buf, dst + i, static_cast<size_t>(len));
  }
}

}  // namespace flux
