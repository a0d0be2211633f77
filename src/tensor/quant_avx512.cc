// AVX-512 dequantizers: quant_body.h over 16 int32/float lanes. Compiled with the AVX-512 flags and
// -ffp-contract=off (a contracted multiply-add would differ from the scalar twin); reached only when
// cpu_features().avx512().
#include <immintrin.h>

#include "tensor/quant.h"
#include "tensor/quant_body.h"

namespace flux::avx512 {
namespace {

struct V16 {
  static constexpr int W = 16;
  using I = __m512i;
  using F = __m512;
  static I load_u8(const uint8_t* p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static I load_i8(const int8_t* p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static I set1(int v) { return _mm512_set1_epi32(v); }
  static I iota(int s) {
    return _mm512_add_epi32(_mm512_set1_epi32(s),
                            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  }
  static I and_c(I a, int c) { return _mm512_and_si512(a, _mm512_set1_epi32(c)); }
  static I srl(I a, int s) { return _mm512_srl_epi32(a, _mm_cvtsi32_si128(s)); }
  static I sll(I a, int s) { return _mm512_sll_epi32(a, _mm_cvtsi32_si128(s)); }
  static I srlv(I a, I s) { return _mm512_srlv_epi32(a, s); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub_c(I a, int c) { return _mm512_sub_epi32(a, _mm512_set1_epi32(c)); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F set1f(float f) { return _mm512_set1_ps(f); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F add_f(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub_f(F a, F b) { return _mm512_sub_ps(a, b); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
};

}  // namespace

void dequantize_row(DType dtype, const void* src, float* dst, int64_t n) {
  quant_body::dequantize<V16>(dtype, src, dst, n);
}

}  // namespace flux::avx512
