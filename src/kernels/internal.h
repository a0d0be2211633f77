// Kernel-layer internals: the per-ISA row kernels (one set per instruction set, compiled from the same
// template body, src/kernels/vec_body.h) and the packed GEMM driver shared by matmul_f32, attention and conv2d.
// Not part of the public API: only src/kernels/*.cc include it.
#pragma once

#include <cstdint>

#include "kernels/conv.h"

namespace flux::kernels::detail {

// One instruction set's row kernels. Every pointer is non-null. n, dim: element counts (any value >= 0).
struct IsaKernels {
  const char* name;
  // GEMM micro-kernel: C[mr, nr] (+)= A_panel[kc, MR]^T-packed x B_panel[kc, NR]; mr <= MR, nr <= NR.
  // ap: MR floats per k step; bp: NR floats per k step (zero-padded panels).
  int mr, nr;
  void (*gemm_micro)(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int64_t mr, int64_t nr,
                     bool accumulate);
  void (*gelu_tanh)(const float* x, float* y, int64_t n);
  void (*silu)(const float* x, float* y, int64_t n);
  void (*quick_gelu)(const float* x, float* y, int64_t n);
  void (*exp)(const float* x, float* y, int64_t n);
  void (*add)(const float* a, const float* b, float* y, int64_t n);
  void (*mul)(const float* a, const float* b, float* y, int64_t n);
  // y = x * a + b elementwise with vectors a, b (modulate passes a = 1 + scale).
  void (*scale_shift)(const float* x, float* y, int64_t n, const float* a, const float* b);
  // y = x * a + b with scalars a, b.
  void (*affine)(const float* x, float* y, int64_t n, float a, float b);
  // x += g * y (g null means 1).
  void (*add_gated)(float* x, const float* y, const float* g, int64_t n);
  void (*softmax_row)(float* x, int64_t n);
  void (*layer_norm_row)(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps);
  void (*rms_norm_row)(const float* x, float* y, int64_t n, const float* gamma, float eps);
  // y = (1 + scale) * LayerNorm(x) + shift (LayerNorm without affine): FLUX's modulated pre-norm.
  void (*layer_norm_modulate_row)(const float* x, float* y, int64_t n, const float* shift, const float* scale,
                                  float eps);
  // y = rope(rms_norm(x) * gamma) on one head of n (even) values; cos, sin: [n / 2] (adjacent pairs).
  void (*rms_norm_rope_row)(const float* x, float* y, int64_t n, const float* gamma, float eps, const float* cos,
                            const float* sin);
  float (*sum)(const float* x, int64_t n);
  float (*sum_sq_dev)(const float* x, int64_t n, float mean);  // sum (x - mean)^2
  float (*max)(const float* x, int64_t n);
  // x = exp(x - m) in place; returns the sum of the new x.
  float (*exp_sub_sum)(float* x, int64_t n, float m);
  void (*scale)(float* x, int64_t n, float a);  // x *= a
};

namespace scalar {
extern const IsaKernels kernels;
}
namespace avx2 {
extern const IsaKernels kernels;
}
namespace avx512 {
extern const IsaKernels kernels;
// Measured flops of vdpbf16ps over vfmadd231ps on this core (about 2 where bf16 dot products run at full rate;
// 0.5 was measured on this project's Xeon VM). Needs AVX512_BF16.
double bf16_dot_speedup();
}  // namespace avx512

// The best set the current CPU cap allows (read per call: tests change the cap at run time).
const IsaKernels& isa_kernels();

// Packed panels. A panel of rows: [ceil(m / mr)][k][mr]; of columns: [ceil(n / nr)][k][nr]; zero-padded.
int64_t packed_a_floats(int64_t m, int64_t k, int mr);
int64_t packed_b_floats(int64_t n, int64_t k, int nr);
// a: [m, k] row-major with row stride lda.
void pack_a(const float* a, int64_t lda, int64_t m, int64_t k, int mr, float* out);
// b given as [n, k] (a weight matrix W, product x W^T), row stride ldb.
void pack_b_nk(const float* b, int64_t ldb, int64_t n, int64_t k, int nr, float* out);
// b given as [k, n] (product x B), row stride ldb.
void pack_b_kn(const float* b, int64_t ldb, int64_t k, int64_t n, int nr, float* out);

// C[m, n] (+)= A B from packed panels, serial. ap: pack_a of [m, k]; bp: pack_b_* of the k x n operand.
void gemm_packed(const IsaKernels& isa, int64_t m, int64_t n, int64_t k, const float* ap, const float* bp, float* c,
                 int64_t ldc, bool accumulate);

// C[m, n] = A[m, k] B + (bias[n] or nothing), threaded with parallel_for. b_is_nk: B given as [n, k] (x W^T),
// else as [k, n]. Strided operands (lda, ldb, ldc in floats).
void gemm_threaded(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   bool b_is_nk, const float* bias, float* c, int64_t ldc);

// Tests: force linear_compute_dtype()'s bf16 decision (1 = bf16 where AVX512_BF16 exists, 0 = f32, -1 = the
// probe / FLUX_MATMUL_BF16 again).
void force_bf16_products(int mode);
// Tests: the per_call panel size in bytes of packed weight (<= 0 restores the default, 8 MB; widened stored
// rows take at most 2 MB panels). Read at each Linear construction.
void set_linear_panel_bytes(int64_t bytes);
// Tests: the rows of x from which per_call products pack their panels blocked instead of handing oneDNN the
// stored rows (<= 0 restores the default, 2048). Read at each call.
void set_linear_blocked_from_m(int64_t m);
// Tests and bench: whether Linears made from now on pack their weight directly (the default) or always in two
// passes, widen then oneDNN's reorder (linear_pack.h).
void set_linear_direct_pack(bool on);

// conv2d's two paths (p already validated): oneDNN's convolution (the default) and im2col + gemm_threaded
// (under FLUX_CPU=scalar, and checked by the tests on every ISA).
void conv2d_onednn(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void conv2d_im2col(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);

}  // namespace flux::kernels::detail
