// Elementwise activations and arithmetic, F32. Each may run in place (y == x).
#pragma once

#include <cstdint>

namespace flux::kernels {

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's gelu(approximate="tanh") / T5's gelu_new.
void gelu_tanh(const float* x, float* y, int64_t n);
// x * sigmoid(x)
void silu(const float* x, float* y, int64_t n);
// x * sigmoid(1.702 x), CLIP's quick_gelu.
void quick_gelu(const float* x, float* y, int64_t n);
// Softmax over each row of length dim, in place. x: [rows, dim].
void softmax(float* x, int64_t rows, int64_t dim);

// y = a + b; y = a * b (n elements).
void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);
// y[r, d] = x[r, d] * (1 + scale[d]) + shift[d]; x, y: [rows, dim]  (FLUX's ModulationOut, adaLN)
void modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale);
// x[r, d] += gate[d] * y[r, d]  (gated residual); gate null means 1.
void add_gated(float* x, const float* y, const float* gate, int64_t rows, int64_t dim);
// y = (1 + scale) * LayerNorm(x) + shift with a LayerNorm of no affine: FLUX's pre-norm and its modulation
// (norm1 / norm2, ModulationOut.scale and .shift) in one pass per row; the operations of layer_norm then
// modulate. x, y: [rows, dim]; shift, scale: [dim].
void layer_norm_modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale,
                         float eps);
// x += gate * r (the gated residual, as add_gated), then y = layer_norm_modulate(x): FLUX's residual after
// attention and the MLP's pre-norm in one pass per row. x, r, y: [rows, dim]; gate, shift, scale: [dim].
void add_gated_layer_norm_modulate(float* x, const float* r, const float* gate, float* y, int64_t rows, int64_t dim,
                                   const float* shift, const float* scale, float eps);

namespace reference {
void gelu_tanh(const float* x, float* y, int64_t n);
void silu(const float* x, float* y, int64_t n);
void quick_gelu(const float* x, float* y, int64_t n);
void softmax(float* x, int64_t rows, int64_t dim);
void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);
void modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale);
void add_gated(float* x, const float* y, const float* gate, int64_t rows, int64_t dim);
// The unfused compositions: reference::layer_norm then reference::modulate (and reference::add_gated first).
void layer_norm_modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale,
                         float eps);
void add_gated_layer_norm_modulate(float* x, const float* r, const float* gate, float* y, int64_t rows, int64_t dim,
                                   const float* shift, const float* scale, float eps);
}  // namespace reference

}  // namespace flux::kernels
