#include "tensor/convert.h"

#include <array>
#include <cmath>
#include <cstring>

#include "base/cpu.h"
#include "base/error.h"

namespace flux {

float bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24
      float f = std::ldexp(static_cast<float>(mant), -24);
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {               // below the smallest normal f16 (2^-14): subnormal or zero
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25)... (ties handled below)
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 113 - exp + 13
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t q = mant >> shift;
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t v = abs - 0x38000000u;  // rebias exponent 127 -> 15
  const uint32_t rem = v & 0x1fffu;
  v >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (v & 1u))) ++v;
  return static_cast<uint16_t>(sign | v);
}

float f8e4m3_to_f32(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int exp = (v >> 3) & 0xf;
  const int mant = v & 0x7;
  if (exp == 0xf && mant == 0x7) return std::nanf("");
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -9);  // subnormal: mant/8 * 2^-6
  return sign * std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
}

namespace scalar {
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
}  // namespace scalar

void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  switch (isa_level()) {
    case IsaLevel::avx512:
      return avx512::convert_bf16_to_f32(src, dst, n);
    case IsaLevel::avx2:
      return avx2::convert_bf16_to_f32(src, dst, n);
    case IsaLevel::scalar:
      return scalar::convert_bf16_to_f32(src, dst, n);
  }
}
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n) {
  if (isa_level() == IsaLevel::avx512 && cpu_features().avx512_bf16) return avx512::convert_f32_to_bf16(src, dst, n);
  if (isa_level() >= IsaLevel::avx2) return avx2::convert_f32_to_bf16(src, dst, n);
  scalar::convert_f32_to_bf16(src, dst, n);
}
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  switch (isa_level()) {
    case IsaLevel::avx512:
      return avx512::convert_f16_to_f32(src, dst, n);
    case IsaLevel::avx2:
      return avx2::convert_f16_to_f32(src, dst, n);
    case IsaLevel::scalar:
      return scalar::convert_f16_to_f32(src, dst, n);
  }
}
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  switch (isa_level()) {
    case IsaLevel::avx512:
      return avx512::convert_f32_to_f16(src, dst, n);
    case IsaLevel::avx2:
      return avx2::convert_f32_to_f16(src, dst, n);
    case IsaLevel::scalar:
      return scalar::convert_f32_to_f16(src, dst, n);
  }
}
void convert_f8e4m3_to_f32(const uint8_t* src, float* dst, size_t n) {
  static const auto table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[static_cast<size_t>(i)] = f8e4m3_to_f32(static_cast<uint8_t>(i));
    return t;
  }();
  for (size_t i = 0; i < n; ++i) dst[i] = table[src[i]];
}

void convert_to_f32(DType src_dtype, const void* src, float* dst, size_t n) {
  switch (src_dtype) {
    case DType::f32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::bf16:
      return convert_bf16_to_f32(static_cast<const uint16_t*>(src), dst, n);
    case DType::f16:
      return convert_f16_to_f32(static_cast<const uint16_t*>(src), dst, n);
    case DType::f8_e4m3:
      return convert_f8e4m3_to_f32(static_cast<const uint8_t*>(src), dst, n);
    default:
      fail("convert_to_f32: unsupported source dtype ", dtype_name(src_dtype));
  }
}

void convert_from_f32(const float* src, DType dst_dtype, void* dst, size_t n) {
  switch (dst_dtype) {
    case DType::f32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::bf16:
      return convert_f32_to_bf16(src, static_cast<uint16_t*>(dst), n);
    case DType::f16:
      return convert_f32_to_f16(src, static_cast<uint16_t*>(dst), n);
    default:
      fail("convert_from_f32: unsupported target dtype ", dtype_name(dst_dtype));
  }
}

}  // namespace flux
