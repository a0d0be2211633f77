// ggml's block layouts (ggml/src/ggml-common.h at ggml 8e800cef), for the dequantizers and quantizers in
// src/tensor/quant*.cc and quantize*.cc and the tile packers in src/kernels/linear_pack_avx512.cc only. Every field
// is a byte or a little-endian 16-bit word, so the structs have no padding and 2-byte alignment; `d`, `m`, `dmin`
// are IEEE half bit patterns.
#pragma once

#include <cstdint>
#include <cstring>

namespace flux::blocks {

constexpr int kQK = 32;     // elements per block of the legacy types (q4_0 ... q8_0)
constexpr int kQK_K = 256;  // elements per super-block of the k-quants

struct Q4_0 {
  uint16_t d;
  uint8_t qs[16];  // element j: low nibble of qs[j]; element j + 16: high nibble
};
struct Q4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct Q5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit j: the 5th bit of element j
  uint8_t qs[16];
};
struct Q5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct Q8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct Q2_K {
  uint8_t scales[16];  // low nibble: scale, high nibble: min, per 16 elements
  uint8_t qs[64];
  uint16_t d, dmin;
};
struct Q3_K {
  uint8_t hmask[32];  // a set bit means "no -4"
  uint8_t qs[64];
  uint8_t scales[12];  // 16 6-bit scales
  uint16_t d;
};
struct Q4_K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 6-bit scales and 8 6-bit mins (get_scale_min)
  uint8_t qs[128];
};
struct Q5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct Q6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};

static_assert(sizeof(Q4_0) == 18 && sizeof(Q4_1) == 20 && sizeof(Q5_0) == 22 && sizeof(Q5_1) == 24 &&
              sizeof(Q8_0) == 34);
static_assert(sizeof(Q2_K) == 84 && sizeof(Q3_K) == 110 && sizeof(Q4_K) == 144 && sizeof(Q5_K) == 176 &&
              sizeof(Q6_K) == 210);

// (static: these are compiled into baseline and AVX files alike; each keeps its own copy.)
// The 6-bit scale and min of sub-block j (0..7) of a q4_K / q5_K block (ggml's get_scale_min_k4).
static inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// All 8 at once: byte j of sc / mn is scale_min_k4(j, q)'s sc / mn. Each 6-bit field is made in all four bytes of a
// word by one mask and shift (q[0..11] read as three little-endian words a, b, c).
static inline void scales_mins_k4(const uint8_t* q, uint64_t& sc, uint64_t& mn) {
  uint32_t a, b, c;
  std::memcpy(&a, q, 4), std::memcpy(&b, q + 4, 4), std::memcpy(&c, q + 8, 4);
  sc = (a & 0x3F3F3F3Fu) | uint64_t{(c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u)} << 32;
  mn = (b & 0x3F3F3F3Fu) | uint64_t{((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u)} << 32;
}

// The signed 6-bit scale i (0..15) of a q3_K block, already minus 32.
static inline int q3_k_scale(const uint8_t* scales, int i) {
  const int lo = i < 8 ? scales[i] & 0xF : scales[i - 8] >> 4;
  const int hi = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

}  // namespace flux::blocks
