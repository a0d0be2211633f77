// Internals of the quantizers (quantize*.cc only): ggml's search helpers and one row quantizer per type.
// Each helper keeps ggml's float32 evaluation order (the files are compiled with -ffp-contract=off), so its
// choices, and the bytes that follow from them, are ggml's. Names follow ggml-quants.c (ggml 8e800cef).
#pragma once

#include <cstdint>

#include "tensor/quant_blocks.h"

namespace flux::quant_detail {

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS: a group whose |max| is below this is all zeros

// round-to-nearest of |f| < 2^22 via the 1.5 * 2^23 trick (ggml's nearest_int; ties to even).
int nearest_int(float f);
uint16_t f2h(float f);  // f32 -> f16 bits, nearest even
float h2f(uint16_t h);

// Symmetric levels L[i] in [0, 2 nmax) (offset by nmax) minimising the weighted error; returns the scale.
// rmse_type 1 only (what the k-quants and q4_0/q5_0 use); weights null means x^2.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* weights);
// Asymmetric levels L[i] in [0, nmax] with a min <= 0 (*the_min = -min); returns the scale.
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep, bool use_mad);
// Positive levels L[i] in [0, nmax] for the super-block's scales (or mins); returns their scale.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* weights);

// One row of n_per_row values -> n_per_row / block_size blocks at y. `importance` has n_per_row entries.
void quantize_row_q4_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_0_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q4_1_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q5_0_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q5_1_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q2_K_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q3_K_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q4_K_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q5_K_impl(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q6_K_impl(const float* x, void* y, int64_t n, const float* importance);

}  // namespace flux::quant_detail
