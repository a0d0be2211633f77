// Element types of tensors and their storage sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flux {

enum class DType : uint8_t {
  f32,
  f16,
  bf16,
  f8_e4m3,  // float8 e4m3fn (no infinities; 0x7f/0xff are NaN), shipped by some T5/FLUX files
  f64,
  i64,
  i32,
  i16,
  i8,
  u8,
  boolean,
};

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "bf16", ...
bool is_float(DType dtype);           // f32, f16, bf16, f8_e4m3, f64

}  // namespace flux
