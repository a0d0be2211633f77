// Thin f32 products for LoRA updates (kernels/low_rank.h) on oneDNN's sgemm.
#include "kernels/low_rank.h"

#include <oneapi/dnnl/dnnl.h>

#include <vector>

#include "base/error.h"

namespace flux::kernels {

void gemm_f32(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const dnnl_status_t s = dnnl_sgemm('N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  FLUX_CHECK(s == dnnl_success, "gemm_f32: oneDNN sgemm failed (status ", static_cast<int>(s), ") for m ", m, " n ", n,
             " k ", k);
}

void gemm_f32_reference(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                        const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += static_cast<double>(a[i * lda + p]) * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      float& out = c[i * ldc + j];
      out = static_cast<float>(alpha * s + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * out));
    }
}

void add_low_rank(const float* x, int64_t m, int64_t k, const float* down, int64_t rank, const float* up, int64_t n,
                  float scale, float* y, int64_t ldy) {
  thread_local std::vector<float> t;  // [m, rank] = x · downᵀ
  t.resize(static_cast<size_t>(m * rank));
  gemm_f32(true, m, rank, k, 1.0f, x, k, down, k, 0.0f, t.data(), rank);
  gemm_f32(true, m, n, rank, scale, t.data(), rank, up, rank, 1.0f, y, ldy);
}

}  // namespace flux::kernels
