// Quantizers: f32 rows in, ggml blocks out, byte for byte what ggml (ggml/src/ggml-quants.c at ggml 8e800cef)
// writes for the same input and the same importance weights.
//
// Two algorithms, chosen as ggml's quantize_<type>() chooses them:
// - importance == nullptr: ggml's reference quantizers quantize_row_<type>_ref (what gguf-py writes), for
//   q4_0 q4_1 q5_0 q5_1 q8_0. The k-quants' reference quantizers are not implemented: they need importance.
// - importance = n_per_row weights, one per column (an importance matrix): ggml's quantize_row_<type>_impl
//   searches (make_qx_quants, make_qkx3_quants, make_qp_quants). stable-diffusion.cpp's `sd-cli -M convert`
//   passes all ones (src/model_loader.cpp convert_tensor at sd.cpp 97d2990); ones(n_per_row) reproduces its
//   files. q8_0 ignores the weights (ggml does too).
// f16 and bf16 targets round to nearest even (ggml_fp32_to_fp16_row / ggml_fp32_to_bf16_row_ref); f32 copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace flux {

// src: F32 [nrows, n_per_row]; dst: nrows * dtype_nbytes(dtype, n_per_row) bytes. Returns the bytes written.
// Rows are independent and run on the thread pool. Throws Error for a row that is not whole blocks, an
// unsupported dtype, or a k-quant without importance.
size_t quantize_rows(DType dtype, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                     const float* importance);

// A tensor [..., n] (any float dtype; converted to f32 first) quantized along its last dim to `dtype`.
Tensor quantize(const Tensor& t, DType dtype, const float* importance);

// n ones: the importance stable-diffusion.cpp passes, which selects ggml's search quantizers.
std::vector<float> unit_importance(int64_t n);

}  // namespace flux
