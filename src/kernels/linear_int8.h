// int8 products for kernels::Linear (Precision::int8): y = x W^T + b on 8-bit integer dot products.
//  - The weight [N, K] (any stored form: f32, bf16, f16, f8_e4m3, every ggml block type) becomes int8 with one
//    scale per output feature: a row is widened to f32 with the usual conversions (convert_to_f32,
//    dequantize_row), sw[n] = absmax / w_max, q = round(w / sw[n]). Prepacked: once, then reordered into
//    oneDNN's layout; per_call: one panel of rows at a time into a reused scratch (no full-size copy).
//  - The activations are quantized per token (row of x) at run time, unsigned with zero point 128:
//    sx[m] = absmax / 127, qx = round(x / sx[m]) + 128, in [1, 255].
//  - oneDNN multiplies u8 x s8 -> s32 exactly; our epilogue applies the scales oneDNN 2.6 cannot (its
//    output scales are common or per N, never per row):
//      y[m, n] = (acc[m, n] - 128 sum_k qw[n, k]) * sx[m] * sw[n] + b[n].
// Without VNNI, oneDNN's AVX2/AVX-512 int8 gemm sums pairs of u8 x s8 products in 16 bits with saturation
// (vpmaddubsw; measured here: 2 x 255 x 127 saturates), so weights take w_max = 63 there (2 x 255 x 63 =
// 32130 fits); with AVX512_VNNI (vpdpbusd sums in 32 bits) w_max = 127.
// Only src/kernels/*.cc, tests and bench include this header.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/matmul.h"
#include "tensor/tensor.h"

namespace flux::kernels::detail {

// The largest |q| of an int8 weight on this CPU: 127 with AVX512_VNNI, else 63 (see above).
int int8_weight_max();

// Rows [0, n) of a storage-form weight (`rows`: n rows of k elements of `from`) -> q [n, k] int8 with
// |q| <= w_max, scales [n] (w ~ q * scale; 1 for an all-zero row) and sums [n] = sum_k q. Threaded over rows.
void quantize_weight_rows(DType from, const void* rows, int64_t n, int64_t k, int w_max, int8_t* q, float* scales,
                          int32_t* sums);
// x [m, k] f32 -> q [m, k] u8 = round(x / s) + 128, scales [m] = absmax / 127 (1 for an all-zero row).
// Threaded over rows. Rounding is to nearest even at every ISA level, so each level gives the same bytes.
void quantize_activation_rows(const float* x, int64_t m, int64_t k, uint8_t* q, float* scales);
// y[r, j] = float(acc[r, j] - comp[j]) * (sx[r] * sw[j]) + bias[j] (bias may be null) for r < m, j < width;
// acc dense [m, width]; y row stride ldy floats. acc and y may be the same memory when ldy == width.
void int8_epilogue(const int32_t* acc, int64_t m, int64_t width, const float* sx, const float* sw, const int32_t* comp,
                   const float* bias, float* y, int64_t ldy);

// The int8 half of a Linear: its weight (packed, or the storage tensor in per_call mode) and its products.
class Int8Linear {
 public:
  // weight: [N, K] any stored form; bias: N floats or empty; panel: output features per per_call panel.
  Int8Linear(Tensor weight, std::vector<float> bias, WeightMode mode, int64_t panel);
  ~Int8Linear();
  // x [m, K] -> y [m, N]. Thread-safe for concurrent calls with distinct y.
  void forward(const float* x, int64_t m, float* y) const;
  size_t packed_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Per-ISA row kernels (scalar twins are the reference; avx2 needs cpu_features().avx2).
namespace scalar {
float absmax(const float* x, int64_t n);
void quantize_row_u8(const float* x, int64_t n, float inv_scale, uint8_t* q);  // round(x * inv) + 128
void quantize_row_s8(const float* x, int64_t n, float inv_scale, int8_t* q);   // round(x * inv)
void epilogue_row(const int32_t* acc, int64_t n, float sx, const float* sw, const int32_t* comp, const float* bias,
                  float* y);
}  // namespace scalar
namespace avx2 {
float absmax(const float* x, int64_t n);
void quantize_row_u8(const float* x, int64_t n, float inv_scale, uint8_t* q);
void quantize_row_s8(const float* x, int64_t n, float inv_scale, int8_t* q);
void epilogue_row(const int32_t* acc, int64_t n, float sx, const float* sw, const int32_t* comp, const float* bias,
                  float* y);
// Bench: the int8 multiply-accumulate rate of vpmaddubsw + vpmaddwd + vpaddd on all cores, in ops/s (2 per
// u8 x s8 product), measured over a few milliseconds.
double int8_peak_ops();
}  // namespace avx2
namespace avx512 {
// Bench: as avx2::int8_peak_ops with vpdpbusd (needs AVX512_VNNI).
double int8_vnni_peak_ops();
}  // namespace avx512

}  // namespace flux::kernels::detail
