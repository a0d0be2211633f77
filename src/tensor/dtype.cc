#include "tensor/dtype.h"

#include "base/error.h"

namespace flux {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
    case DType::f8_e4m3:
      return 1;
    case DType::f64:
      return 8;
    case DType::i64:
      return 8;
    case DType::i32:
      return 4;
    case DType::i16:
      return 2;
    case DType::i8:
      return 1;
    case DType::u8:
      return 1;
    case DType::boolean:
      return 1;
    case DType::q4_0:
      return 18;
    case DType::q4_1:
      return 20;
    case DType::q5_0:
      return 22;
    case DType::q5_1:
      return 24;
    case DType::q8_0:
      return 34;
    case DType::q2_K:
      return 84;
    case DType::q3_K:
      return 110;
    case DType::q4_K:
      return 144;
    case DType::q5_K:
      return 176;
    case DType::q6_K:
      return 210;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
    case DType::f8_e4m3:
      return "f8_e4m3";
    case DType::f64:
      return "f64";
    case DType::i64:
      return "i64";
    case DType::i32:
      return "i32";
    case DType::i16:
      return "i16";
    case DType::i8:
      return "i8";
    case DType::u8:
      return "u8";
    case DType::boolean:
      return "bool";
    case DType::q4_0:
      return "q4_0";
    case DType::q4_1:
      return "q4_1";
    case DType::q5_0:
      return "q5_0";
    case DType::q5_1:
      return "q5_1";
    case DType::q8_0:
      return "q8_0";
    case DType::q2_K:
      return "q2_K";
    case DType::q3_K:
      return "q3_K";
    case DType::q4_K:
      return "q4_K";
    case DType::q5_K:
      return "q5_K";
    case DType::q6_K:
      return "q6_K";
  }
  return "?";
}

bool is_float(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f8_e4m3 ||
         dtype == DType::f64;
}

bool is_quantized(DType dtype) { return dtype >= DType::q4_0 && dtype <= DType::q6_K; }

int64_t dtype_block_size(DType dtype) {
  if (!is_quantized(dtype)) return 1;
  return dtype >= DType::q2_K ? 256 : 32;
}

size_t dtype_block_bytes(DType dtype) { return dtype_size(dtype); }

size_t dtype_nbytes(DType dtype, int64_t n) {
  const int64_t block = dtype_block_size(dtype);
  FLUX_CHECK(n >= 0 && n % block == 0, dtype_name(dtype), ": ", n, " elements are not a whole number of ", block,
             "-element blocks");
  return static_cast<size_t>(n / block) * dtype_block_bytes(dtype);
}

}  // namespace flux
