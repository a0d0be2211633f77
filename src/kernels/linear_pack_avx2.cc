// AVX2 pack_tile (linear_pack.h): 8 x 8 transposes of 32-bit units (bf16 pairs or floats) in registers.
// Reached only when cpu_features().avx2 and ku, nb are multiples of 8.
#include <immintrin.h>

#include "kernels/linear_pack.h"

namespace flux::kernels::detail::avx2 {
namespace {

// dst[c][r] = src[r][c] for r, c < 8 (row strides ld, ldd units).
inline void transpose8(const uint32_t* src, int64_t ld, uint32_t* dst, int64_t ldd) {
  __m256i r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i * ld));
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    r[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // Lane L of r[4i + j] holds column 4L + j, rows 4i..4i+3.
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j * ldd), _mm256_permute2x128_si256(r[j], r[4 + j], 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (j + 4) * ldd),
                        _mm256_permute2x128_si256(r[j], r[4 + j], 0x31));
  }
}

}  // namespace

void pack_tile(const uint32_t* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
               int64_t k_stride, uint32_t* out) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    for (int64_t j = 0; j < ku; j += 8) {
      for (int64_t r = 0; r < rows; r += 8)
        transpose8(tile + r * ld + b * ku + j, ld, out + b * k_stride + j * nb + r, nb);
    }
  }
}

}  // namespace flux::kernels::detail::avx2
