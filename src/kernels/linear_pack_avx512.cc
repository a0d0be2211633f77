// AVX-512 pack_tile, pack_tile_bf16 / _f16 / _f8 and pack_tile_blocks (q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K;
// linear_pack.h): 16 x 16 transposes of 32-bit units (bf16 pairs or floats) in registers. Reached only when
// cpu_features().avx512() (and avx512_bf16 for all but pack_tile), with ku and nb multiples of 16. g++ 12 flags the
// intrinsics' own `_mm512_undefined_epi32()` pass-through as uninitialized once inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/linear_pack.h"
#include "tensor/convert.h"
#include "tensor/quant_blocks.h"  // the block layouts and scale decoding the dequantizers use

namespace flux::kernels::detail::avx512 {
namespace {

// Rows 4i..4i+3 of a 16 x 16 transpose (q: four rows of 16 units) -> u[4i + j], whose 128-bit lane L holds
// column 4L + j of those rows. Done a quad at a time so no more than about 24 registers are live.
inline void transpose_quad(const __m512i* q, __m512i* u) {
  const __m512i t0 = _mm512_unpacklo_epi32(q[0], q[1]), t1 = _mm512_unpackhi_epi32(q[0], q[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(q[2], q[3]), t3 = _mm512_unpackhi_epi32(q[2], q[3]);
  u[0] = _mm512_unpacklo_epi64(t0, t2);
  u[1] = _mm512_unpackhi_epi64(t0, t2);
  u[2] = _mm512_unpacklo_epi64(t1, t3);
  u[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Finishes the transpose: dst[c][r] = unit c of row r (dst row stride ldd units), a 4 x 4 transpose of the
// 128-bit lanes of u[j], u[4 + j], u[8 + j], u[12 + j] for each j.
inline void transpose_store(const __m512i* u, uint32_t* dst, int64_t ldd) {
  for (int j = 0; j < 4; ++j) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44), v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    _mm512_storeu_si512(dst + (j + 0) * ldd, _mm512_shuffle_i32x4(v0, v2, 0x88));
    _mm512_storeu_si512(dst + (j + 4) * ldd, _mm512_shuffle_i32x4(v0, v2, 0xDD));
    _mm512_storeu_si512(dst + (j + 8) * ldd, _mm512_shuffle_i32x4(v1, v3, 0x88));
    _mm512_storeu_si512(dst + (j + 12) * ldd, _mm512_shuffle_i32x4(v1, v3, 0xDD));
  }
}

// The loop every entry point shares: load(p) gives the 16 units of a row starting at element pointer p.
// `tile` points at elements of type T, rows ld elements apart, with `per_unit` elements per unit.
template <class T, int per_unit, class Load>
inline void pack_rows(const T* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                      int64_t k_stride, uint32_t* out, Load load) {
  __m512i q[4], u[16];
  for (int64_t b = 0; b < n_blocks; ++b) {
    for (int64_t j = 0; j < ku; j += 16) {
      for (int64_t row = 0; row < rows; row += 16) {
        const T* src = tile + row * ld + per_unit * (b * ku + j);
        for (int i = 0; i < 16; i += 4) {
          for (int r = 0; r < 4; ++r) q[r] = load(src + (i + r) * ld);
          transpose_quad(q, u + i);
        }
        transpose_store(u, out + b * k_stride + j * nb + row, nb);
      }
    }
  }
}

// pack_rows for sources whose units are not evenly spaced (ggml blocks): load(r, j) gives units j..j + 15 of
// row r (j a multiple of 16); the tile is one block of ku units (k_stride unused).
template <class Load>
inline void pack_units(int64_t rows, int64_t ku, int64_t nb, uint32_t* out, Load load) {
  __m512i q[4], u[16];
  for (int64_t j = 0; j < ku; j += 16) {
    for (int64_t row = 0; row < rows; row += 16) {
      for (int i = 0; i < 16; i += 4) {
        for (int r = 0; r < 4; ++r) q[r] = load(row + i + r, j);
        transpose_quad(q, u + i);
      }
      transpose_store(u, out + j * nb + row, nb);
    }
  }
}

// An IEEE half bit pattern to f32, exactly (vcvtph2ps), as f16_to_f32.
inline float half_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return _cvtsh_ss(h);
}

// The same, broadcast to 16 lanes and widened in the vector unit (no trip through a scalar register: through
// half_to_float, the chain per 32 elements held q8_0's conversion up, a 64 x 3072 tile in 15.5 us on one Zen 5
// core, warm; 9 us so).
inline __m512 half_to_floats(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(h)));
}

// 32 floats -> 16 bf16 pairs (vcvtne2ps2bf16 puts its second operand in the low half).
inline __m512i round_pairs(__m512 lo, __m512 hi) {
  const __m512bh pairs = _mm512_cvtne2ps_pbh(hi, lo);
  return reinterpret_cast<const __m512i&>(pairs);
}

// f8_e4m3 -> bf16 for the 128 codes without the sign bit, made from the scalar twins (the conversion is exact).
struct F8Table {
  __m512i t[4];  // codes 0-31, 32-63, 64-95, 96-127
  F8Table() {
    alignas(64) uint16_t v[128];
    for (int c = 0; c < 128; ++c) v[c] = f32_to_bf16(f8e4m3_to_f32(static_cast<uint8_t>(c)));
    for (int i = 0; i < 4; ++i) t[i] = _mm512_load_si512(v + 32 * i);
  }
};

// q8_0: y = q * d (quant_body.h's q8_0, lane for lane), then rounded as pack_tile_bf16 rounds.
void pack_tile_q8_0(const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb, uint32_t* out) {
  pack_units(n_rows, ku, nb, out, [&](int64_t r, int64_t j) {
    const uint8_t* block =
        rows + static_cast<size_t>(r) * row_bytes + static_cast<size_t>(j / 16) * sizeof(blocks::Q8_0);
    const __m512 d = half_to_floats(block);
    const __m512i lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2)));
    const __m512i hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 18)));
    return round_pairs(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
  });
}

// q4_0, q4_1, q5_0, q5_1: element e (0..15) of a block is the low nibble of qs[e], element e + 16 the high one,
// for q5 plus bit e (e + 16) of qh as the fifth bit; then (q - 8) * d (q4_0), (q - 16) * d (q5_0) or q * d + m
// (quant_body.h's q4_0, q4_1, q5, lane for lane), rounded as above. d (and m) broadcast as halves, as for q8_0.
template <class Block>
void pack_tile_legacy(const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb, uint32_t* out) {
  constexpr bool kFive = std::is_same_v<Block, blocks::Q5_0> || std::is_same_v<Block, blocks::Q5_1>;
  constexpr bool kMin = std::is_same_v<Block, blocks::Q4_1> || std::is_same_v<Block, blocks::Q5_1>;
  constexpr int kOffset = kMin ? 0 : kFive ? 16 : 8;
  const __m512i low4 = _mm512_set1_epi32(0xF), one = _mm512_set1_epi32(1), offset = _mm512_set1_epi32(kOffset);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i iota16 = _mm512_add_epi32(iota, _mm512_set1_epi32(16));
  pack_units(n_rows, ku, nb, out, [&](int64_t r, int64_t j) {
    const auto* block = reinterpret_cast<const Block*>(rows + static_cast<size_t>(r) * row_bytes +
                                                       static_cast<size_t>(j / 16) * sizeof(Block));
    const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block->qs)));
    __m512i lo = _mm512_and_si512(q, low4), hi = _mm512_srli_epi32(q, 4);
    if constexpr (kFive) {
      uint32_t h;
      std::memcpy(&h, block->qh, sizeof h);
      const __m512i hv = _mm512_set1_epi32(static_cast<int>(h));
      lo = _mm512_add_epi32(lo, _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(hv, iota), one), 4));
      hi = _mm512_add_epi32(hi, _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(hv, iota16), one), 4));
    }
    const __m512 d = half_to_floats(reinterpret_cast<const uint8_t*>(&block->d));
    if constexpr (kMin) {
      const __m512 m = half_to_floats(reinterpret_cast<const uint8_t*>(&block->m));
      return round_pairs(_mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), m),
                         _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(hi), d), m));
    } else {
      return round_pairs(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(lo, offset)), d),
                         _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(hi, offset)), d));
    }
  });
}

// The K-quants' walk: rows in groups of 16, K in super-blocks of 128 units. For each group's super-block,
// prepare(r, block) once per row r (its scales, decoded before the vector work), then pack_units with
// load(r, block, j), j the unit within the super-block.
template <class Block, class Prepare, class Load>
inline void pack_super_blocks(const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb,
                              uint32_t* out, Prepare prepare, Load load) {
  constexpr int64_t kUnits = 128;  // units (bf16 pairs) per super-block
  for (int64_t row0 = 0; row0 < n_rows; row0 += 16) {
    for (int64_t sb = 0; sb < ku / kUnits; ++sb) {
      const uint8_t* first = rows + static_cast<size_t>(row0) * row_bytes + static_cast<size_t>(sb) * sizeof(Block);
      auto block = [&](int64_t r) {
        return reinterpret_cast<const Block*>(first + static_cast<size_t>(r) * row_bytes);
      };
      for (int r = 0; r < 16; ++r) prepare(r, block(r));
      pack_units(16, kUnits, nb, out + sb * kUnits * nb + row0,
                 [&](int64_t r, int64_t j) { return load(r, block(r), j); });
    }
  }
}

// q4_K and q5_K: sub-block s (32 elements) of a super-block is y = (d * sc) * q - dmin * mn with q the low (s even)
// or high (s odd) nibbles of qs[32 (s / 2) ..], for q5_K plus bit s of qh[0..31] as q's fifth bit (quant_body.h's
// q45_k, lane for lane), then rounded as above. The scales of 16 rows' super-block are decoded first, in a loop of
// their own: decoded per row and sub-block beside the vector work, their scalar chain (6-bit fields, half to float,
// into a vector register) held it up: a q4_K 64 x 3072 tile took 29-30 us on one Zen 5 core (warm), 16-21 us so.
// (A table of a sub-block's 16 values indexed by vpermw, fewer vector operations, took 13-18 us warm but 28-40 us
// with the stored bytes not in cache, against 21-27 us.)
template <class Block>
void pack_tile_k_quants(const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb, uint32_t* out) {
  constexpr bool kFive = std::is_same_v<Block, blocks::Q5_K>;
  const __m512i low4 = _mm512_set1_epi32(0xF), one = _mm512_set1_epi32(1);
  alignas(64) float scale[16][8], min[16][8];
  // A row's 8 scales and 8 mins at once (blocks::scales_mins_k4), widened and multiplied 8 at a time. (Field by
  // field, the scalar decode took about as long as the vector work: a 64 x 3072 tile on one Zen 5 core, warm, q4_K
  // 16-20 us -> 12 us, q5_K 25 -> 17 us.)
  auto prepare = [&](int r, const Block* block) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(block);
    uint64_t sc, mn;
    blocks::scales_mins_k4(block->scales, sc, mn);
    auto widen = [](uint64_t fields) {
      return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(fields))));
    };
    _mm256_store_ps(scale[r], _mm256_mul_ps(_mm256_set1_ps(half_to_float(bytes)), widen(sc)));
    _mm256_store_ps(min[r], _mm256_mul_ps(_mm256_set1_ps(half_to_float(bytes + 2)), widen(mn)));
  };
  auto load = [&](int64_t r, const Block* block, int64_t j) {
    const int sub = static_cast<int>(j / 16);
    const __m512 d1 = _mm512_set1_ps(scale[r][sub]), m1 = _mm512_set1_ps(min[r][sub]);
    const uint8_t* q = block->qs + 32 * (sub / 2);
    __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    __m512i hi = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)));
    if (sub % 2) {
      lo = _mm512_srli_epi32(lo, 4), hi = _mm512_srli_epi32(hi, 4);
    } else {
      lo = _mm512_and_si512(lo, low4), hi = _mm512_and_si512(hi, low4);
    }
    if constexpr (kFive) {
      const __m128i shift = _mm_cvtsi32_si128(sub);
      const __m512i h_lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block->qh)));
      const __m512i h_hi = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block->qh + 16)));
      lo = _mm512_or_si512(lo, _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h_lo, shift), one), 4));
      hi = _mm512_or_si512(hi, _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h_hi, shift), one), 4));
    }
    return round_pairs(_mm512_sub_ps(_mm512_mul_ps(d1, _mm512_cvtepi32_ps(lo)), m1),
                       _mm512_sub_ps(_mm512_mul_ps(d1, _mm512_cvtepi32_ps(hi)), m1));
  };
  pack_super_blocks<Block>(rows, row_bytes, n_rows, ku, nb, out, prepare, load);
}

// q6_K: the 32 elements c (0..7) of a super-block are part c % 4 of its half n = c / 4: the low (parts 0, 1) or
// high (2, 3) nibbles of ql[64 n + 32 (c % 2) ..], bits 2 (c % 4) of qh[32 n ..] as bits 4-5, minus 32, times
// d * scales[8 n + 2 (c % 4)] (the first 16) or [.. + 1] (the next 16): quant_body.h's q6_k, lane for lane, then
// rounded as above. The 16 scales of 16 rows' super-block are made first, as for q4_K.
void pack_tile_q6_k(const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb, uint32_t* out) {
  const __m512i low4 = _mm512_set1_epi32(0xF), three = _mm512_set1_epi32(3), bias = _mm512_set1_epi32(32);
  alignas(64) float scale[16][16];
  auto prepare = [&](int r, const blocks::Q6_K* block) {
    // All 16 at once (one by one: 19.4-19.9 us per warm 64 x 3072 tile, 16.5-17 us so).
    const __m512 d = _mm512_set1_ps(half_to_float(reinterpret_cast<const uint8_t*>(&block->d)));
    const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block->scales));
    _mm512_store_ps(scale[r], _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(scales))));
  };
  auto load = [&](int64_t r, const blocks::Q6_K* block, int64_t j) {
    const int c = static_cast<int>(j / 16), n = c / 4, part = c % 4;
    const uint8_t* ql = block->ql + 64 * n + 32 * (part % 2);
    const uint8_t* qh = block->qh + 32 * n;
    const __m128i shift = _mm_cvtsi32_si128(2 * part);
    auto values = [&](int l) {  // elements l..l + 15 of the part, as int32
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + l)));
      const __m512i h = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + l)));
      const __m512i nibble = part < 2 ? _mm512_and_si512(b, low4) : _mm512_srli_epi32(b, 4);
      const __m512i high = _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h, shift), three), 4);
      return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(nibble, high), bias));
    };
    const float* s = scale[r] + 8 * n + 2 * part;
    return round_pairs(_mm512_mul_ps(_mm512_set1_ps(s[0]), values(0)), _mm512_mul_ps(_mm512_set1_ps(s[1]), values(16)));
  };
  pack_super_blocks<blocks::Q6_K>(rows, row_bytes, n_rows, ku, nb, out, prepare, load);
}

}  // namespace

bool pack_tile_blocks(DType dtype, const uint8_t* rows, size_t row_bytes, int64_t n_rows, int64_t ku, int64_t nb,
                      uint32_t* out) {
  using Packer = void (*)(const uint8_t*, size_t, int64_t, int64_t, int64_t, uint32_t*);
  const Packer packer = dtype == DType::q8_0   ? pack_tile_q8_0
                        : dtype == DType::q4_0 ? pack_tile_legacy<blocks::Q4_0>
                        : dtype == DType::q4_1 ? pack_tile_legacy<blocks::Q4_1>
                        : dtype == DType::q5_0 ? pack_tile_legacy<blocks::Q5_0>
                        : dtype == DType::q5_1 ? pack_tile_legacy<blocks::Q5_1>
                        : dtype == DType::q4_K ? pack_tile_k_quants<blocks::Q4_K>
                        : dtype == DType::q5_K ? pack_tile_k_quants<blocks::Q5_K>
                        : dtype == DType::q6_K ? pack_tile_q6_k
                                               : nullptr;
  if (!packer) return false;
  packer(rows, row_bytes, n_rows, ku, nb, out);
  return true;
}

void pack_tile(const uint32_t* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
               int64_t k_stride, uint32_t* out) {
  pack_rows<uint32_t, 1>(tile, ld, rows, n_blocks, ku, nb, k_stride, out,
                         [](const uint32_t* p) { return _mm512_loadu_si512(p); });
}

void pack_tile_bf16(const float* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                    int64_t k_stride, uint32_t* out) {
  pack_rows<float, 2>(tile, ld, rows, n_blocks, ku, nb, k_stride, out,
                      [](const float* p) { return round_pairs(_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16)); });
}

void pack_tile_f16(const uint16_t* rows_f16, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                   int64_t k_stride, uint32_t* out) {
  pack_rows<uint16_t, 2>(rows_f16, ld, rows, n_blocks, ku, nb, k_stride, out, [](const uint16_t* p) {
    const __m512i h = _mm512_loadu_si512(p);
    return round_pairs(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)));
  });
}

void pack_tile_f8(const uint8_t* rows_f8, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
                  int64_t k_stride, uint32_t* out) {
  static const F8Table table;
  const __m512i low7 = _mm512_set1_epi16(0x7f), sign = _mm512_set1_epi16(static_cast<short>(0x8000));
  pack_rows<uint8_t, 2>(rows_f8, ld, rows, n_blocks, ku, nb, k_stride, out, [&](const uint8_t* p) {
    const __m512i code = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    const __m512i c7 = _mm512_and_si512(code, low7);
    // Codes 0-63 from t[0..1], 64-127 from t[2..3] (vpermi2w indexes 64 words by the low 6 bits).
    const __m512i lo = _mm512_permutex2var_epi16(table.t[0], c7, table.t[1]);
    const __m512i hi = _mm512_permutex2var_epi16(table.t[2], c7, table.t[3]);
    __m512i v = _mm512_mask_mov_epi16(lo, _mm512_test_epi16_mask(c7, _mm512_set1_epi16(0x40)), hi);
    // The sign bit, except on NaN (0x7f, 0xff), which f8e4m3_to_f32 returns positive.
    const __mmask32 negative =
        _mm512_mask_test_epi16_mask(_mm512_cmpneq_epi16_mask(c7, low7), code, _mm512_set1_epi16(0x80));
    return _mm512_mask_mov_epi16(v, negative, _mm512_or_si512(v, sign));
  });
}

}  // namespace flux::kernels::detail::avx512
