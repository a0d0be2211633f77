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
  // ggml block-quantized types (GGUF). A row of n elements is n / dtype_block_size() blocks of
  // dtype_block_bytes() bytes; layouts: ../shared/golden/gguf/README.md, ggml's ggml-common.h.
  q4_0,
  q4_1,
  q5_0,
  q5_1,
  q8_0,
  q2_K,
  q3_K,
  q4_K,
  q5_K,
  q6_K,
};

// Bytes per element; for block-quantized types, bytes per block (use dtype_nbytes for sizes).
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);    // "f32", "bf16", "q4_K", ...
bool is_float(DType dtype);             // f32, f16, bf16, f8_e4m3, f64 (not the quantized types)
bool is_quantized(DType dtype);         // the ggml block types
int64_t dtype_block_size(DType dtype);  // elements per block: 1, 32 (q4_0..q8_0) or 256 (k-quants)
size_t dtype_block_bytes(DType dtype);  // bytes per block (= dtype_size)
// Bytes of `n` elements laid out as one row; throws Error if n is not a multiple of the block size.
size_t dtype_nbytes(DType dtype, int64_t n);

}  // namespace flux
