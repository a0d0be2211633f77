// Thin f32 matrix products for low-rank (LoRA) updates: c[m, n] = alpha * a[m, k] · op(b) + beta * c, row-major
// with leading dimensions, op(b) = b [k, n] or bᵀ for b [n, k]. The fast path is oneDNN's sgemm (threaded by its
// own OpenMP runtime, which is the kernel pool's); gemm_f32_reference is its plain twin.
#pragma once

#include <cstdint>

namespace flux::kernels {

// c[i * ldc + j] = alpha * sum_p a[i * lda + p] * B(p, j) + beta * c[i * ldc + j], where B(p, j) =
// b[j * ldb + p] when trans_b (b stored [n, k]) and b[p * ldb + j] otherwise (b stored [k, n]).
// beta 0 ignores what c held.
void gemm_f32(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc);
void gemm_f32_reference(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                        const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// y[m, n] (row stride ldy) += scale * (x[m, k] · downᵀ) · upᵀ with down [rank, k] and up [n, rank]: the run-time
// LoRA side product. Uses a thread-local [m, rank] scratch.
void add_low_rank(const float* x, int64_t m, int64_t k, const float* down, int64_t rank, const float* up, int64_t n,
                  float scale, float* y, int64_t ldy);

}  // namespace flux::kernels
