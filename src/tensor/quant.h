// Dequantization of ggml's block types (q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K) to f32 or bf16.
// The scalar twin evaluates ggml's dequantize_row_<type> formulas (ggml/src/ggml-quants.c at ggml 8e800cef;
// element order and evaluation order in ../shared/golden/gguf/README.md) in float32 without FMA contraction,
// so it equals ggml and gguf-py bit for bit; the AVX2 and AVX-512 variants equal the scalar twin bit for bit.
// f32, f16 and bf16 sources pass through (copy or widen), so callers need not special-case them.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace flux {

// n elements (a whole number of blocks) of `dtype` starting at `src` -> dst. Dispatched at run time.
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);
// The same, rounded to bf16 (nearest even) afterwards: for products that multiply in bf16.
void dequantize_row_bf16(DType dtype, const void* src, uint16_t* dst, int64_t n);

namespace scalar {
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);
}
namespace avx2 {
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);  // quantized dtypes only
}
namespace avx512 {
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);  // quantized dtypes only
}

}  // namespace flux
