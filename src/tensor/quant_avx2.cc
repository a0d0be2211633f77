// AVX2 dequantizers: quant_body.h over 8 int32/float lanes. Compiled with -mavx2 -mfma -mf16c and
// -ffp-contract=off (a contracted multiply-add would differ from the scalar twin); reached only when
// cpu_features().avx2.
#include <immintrin.h>

#include "tensor/quant.h"
#include "tensor/quant_body.h"

namespace flux::avx2 {
namespace {

struct V8 {
  static constexpr int W = 8;
  using I = __m256i;
  using F = __m256;
  static I load_u8(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static I load_i8(const int8_t* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static I set1(int v) { return _mm256_set1_epi32(v); }
  static I iota(int s) { return _mm256_add_epi32(_mm256_set1_epi32(s), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
  static I and_c(I a, int c) { return _mm256_and_si256(a, _mm256_set1_epi32(c)); }
  static I srl(I a, int s) { return _mm256_srl_epi32(a, _mm_cvtsi32_si128(s)); }
  static I sll(I a, int s) { return _mm256_sll_epi32(a, _mm_cvtsi32_si128(s)); }
  static I srlv(I a, I s) { return _mm256_srlv_epi32(a, s); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub_c(I a, int c) { return _mm256_sub_epi32(a, _mm256_set1_epi32(c)); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F set1f(float f) { return _mm256_set1_ps(f); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F add_f(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub_f(F a, F b) { return _mm256_sub_ps(a, b); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
};

}  // namespace

void dequantize_row(DType dtype, const void* src, float* dst, int64_t n) {
  quant_body::dequantize<V8>(dtype, src, dst, n);
}

}  // namespace flux::avx2
