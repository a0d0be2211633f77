// The in-house GEMM: operands packed into zero-padded panels (kernels/internal.h), a register-blocked
// micro-kernel per ISA (simd_*.cc), cache blocking MC x KC x NC, threaded over C tiles with parallel_for.
// Used by matmul_f32 (the baseline beside oneDNN), attention and conv2d. matmul_reference is its plain twin.
#include <algorithm>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/internal.h"
#include "kernels/matmul.h"

namespace flux::kernels {
namespace detail {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kKC = 256;  // k depth of one packed block: an A panel (MR x KC) stays in L1
constexpr int64_t kMC = 192;  // rows of C per tile (a multiple of every MR: 4, 6, 12)
constexpr int64_t kNC = 512;  // columns of C per tile (a multiple of every NR: 8, 16, 32)

}  // namespace

int64_t packed_a_floats(int64_t m, int64_t k, int mr) { return ceil_div(m, mr) * mr * k; }
int64_t packed_b_floats(int64_t n, int64_t k, int nr) { return ceil_div(n, nr) * nr * k; }

void pack_a(const float* a, int64_t lda, int64_t m, int64_t k, int mr, float* out) {
  for (int64_t i0 = 0; i0 < m; i0 += mr) {
    const int64_t rows = std::min<int64_t>(mr, m - i0);
    for (int64_t kk = 0; kk < k; ++kk) {
      for (int64_t i = 0; i < rows; ++i) out[i] = a[(i0 + i) * lda + kk];
      for (int64_t i = rows; i < mr; ++i) out[i] = 0.0f;
      out += mr;
    }
  }
}

void pack_b_nk(const float* b, int64_t ldb, int64_t n, int64_t k, int nr, float* out) {
  for (int64_t j0 = 0; j0 < n; j0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, n - j0);
    // Transpose in strips of 8 k so each source row is read sequentially.
    for (int64_t k0 = 0; k0 < k; k0 += 8) {
      const int64_t kn = std::min<int64_t>(8, k - k0);
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = b + (j0 + j) * ldb + k0;
        for (int64_t kk = 0; kk < kn; ++kk) out[(k0 + kk) * nr + j] = src[kk];
      }
      for (int64_t j = cols; j < nr; ++j)
        for (int64_t kk = 0; kk < kn; ++kk) out[(k0 + kk) * nr + j] = 0.0f;
    }
    out += k * nr;
  }
}

void pack_b_kn(const float* b, int64_t ldb, int64_t k, int64_t n, int nr, float* out) {
  for (int64_t j0 = 0; j0 < n; j0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, n - j0);
    for (int64_t kk = 0; kk < k; ++kk) {
      const float* src = b + kk * ldb + j0;
      for (int64_t j = 0; j < cols; ++j) out[j] = src[j];
      for (int64_t j = cols; j < nr; ++j) out[j] = 0.0f;
      out += nr;
    }
  }
}

void gemm_packed(const IsaKernels& isa, int64_t m, int64_t n, int64_t k, const float* ap, const float* bp, float* c,
                 int64_t ldc, bool accumulate) {
  // The packed panels may be parts of longer panels (a KC block of a full-depth packing): their stride is
  // still k * MR / k * NR because the caller packs exactly this k.
  for (int64_t j0 = 0; j0 < n; j0 += isa.nr) {
    const float* bpanel = bp + (j0 / isa.nr) * k * isa.nr;
    for (int64_t i0 = 0; i0 < m; i0 += isa.mr) {
      isa.gemm_micro(k, ap + (i0 / isa.mr) * k * isa.mr, bpanel, c + i0 * ldc + j0, ldc,
                     std::min<int64_t>(isa.mr, m - i0), std::min<int64_t>(isa.nr, n - j0), accumulate);
    }
  }
}

void gemm_threaded(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   bool b_is_nk, const float* bias, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const IsaKernels& isa = isa_kernels();
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) ci[j] = bias ? bias[j] : 0.0f;
    }
    return;
  }
  // A is packed once for the whole call, per k block: [k block][row panel][kc][MR].
  const int64_t n_kb = ceil_div(k, kKC), n_panels = ceil_div(m, isa.mr);
  const int64_t a_block = packed_a_floats(m, kKC, isa.mr);
  std::vector<float> apack(static_cast<size_t>(n_kb * a_block));
  parallel_for(n_panels, [&](int64_t p0, int64_t p1) {
    for (int64_t kb = 0; kb < n_kb; ++kb) {
      const int64_t kc = std::min(kKC, k - kb * kKC);
      const int64_t r0 = p0 * isa.mr, r1 = std::min(m, p1 * isa.mr);
      pack_a(a + r0 * lda + kb * kKC, lda, r1 - r0, kc, isa.mr, apack.data() + kb * a_block + p0 * kc * isa.mr);
    }
  });
  // Column tiles: NC wide, narrower when that is needed to give every thread a few tiles.
  const int64_t want_tiles = 2 * default_pool().n_threads();
  int64_t nc_tile = kNC;
  if (ceil_div(n, nc_tile) < want_tiles)
    nc_tile = std::max<int64_t>(isa.nr, ceil_div(ceil_div(n, want_tiles), isa.nr) * isa.nr);
  const int64_t n_nt = ceil_div(n, nc_tile);
  parallel_for(n_nt, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> bpack;
    bpack.resize(static_cast<size_t>(packed_b_floats(kNC, kKC, isa.nr)));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t j0 = t * nc_tile, nc = std::min(nc_tile, n - j0);
      for (int64_t kb = 0; kb < n_kb; ++kb) {
        const int64_t p0 = kb * kKC, kc = std::min(kKC, k - p0);
        if (b_is_nk) {
          pack_b_nk(b + j0 * ldb + p0, ldb, nc, kc, isa.nr, bpack.data());
        } else {
          pack_b_kn(b + p0 * ldb + j0, ldb, kc, nc, isa.nr, bpack.data());
        }
        for (int64_t i0 = 0; i0 < m; i0 += kMC) {
          gemm_packed(isa, std::min(kMC, m - i0), nc, kc, apack.data() + kb * a_block + i0 * kc, bpack.data(),
                      c + i0 * ldc + j0, ldc, kb > 0);
        }
      }
      if (bias != nullptr) {
        for (int64_t i = 0; i < m; ++i) isa.add(c + i * ldc + j0, bias + j0, c + i * ldc + j0, nc);
      }
    }
  });
}

}  // namespace detail

void matmul_reference(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t kk = 0; kk < k; ++kk) s += static_cast<double>(x[i * k + kk]) * w[j * k + kk];
      y[i * n + j] = static_cast<float>(s);
    }
}

void matmul_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n) {
  detail::gemm_threaded(m, n, k, x, k, w, k, /*b_is_nk=*/true, bias, y, n);
}

}  // namespace flux::kernels
