// Conversions between f32 and the 16/8-bit float formats. f32 -> bf16/f16 rounds to nearest even;
// NaN stays NaN (quiet), infinities stay infinite (f16 overflow gives infinity). Vectorised (AVX2 F16C,
// AVX-512 BF16) with scalar twins used by the tests and on CPUs without them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace flux {

// Scalar conversions (the reference behaviour).
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f8e4m3_to_f32(uint8_t v);

// Bulk conversions, dispatched at run time.
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);
void convert_f8e4m3_to_f32(const uint8_t* src, float* dst, size_t n);
// Any float dtype to f32 (f32 copies).
void convert_to_f32(DType src_dtype, const void* src, float* dst, size_t n);
// f32 to any of f32, bf16, f16.
void convert_from_f32(const float* src, DType dst_dtype, void* dst, size_t n);

namespace scalar {
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);
}  // namespace scalar

namespace avx2 {
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);
}  // namespace avx2

namespace avx512 {
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);
}  // namespace avx512

}  // namespace flux
