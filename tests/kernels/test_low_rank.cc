// kernels/low_rank.h: the sgemm wrapper and the LoRA side product against their plain twins, on awkward shapes and
// leading dimensions.
#include <vector>

#include "kernels/low_rank.h"
#include "test_util.h"

namespace flux::kernels {
namespace {

TEST(LowRank, GemmMatchesReference) {
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape s : {Shape{1, 7, 3}, Shape{37, 5, 64}, Shape{130, 96, 17}, Shape{3, 300, 4}})
    for (bool trans_b : {false, true})
      for (float beta : {0.0f, 1.0f}) {
        const int64_t lda = s.k + 3, ldb = (trans_b ? s.k : s.n) + 1, ldc = s.n + 5;
        const auto a = test::random_floats(static_cast<size_t>(s.m * lda), 1);
        const auto b = test::random_floats(static_cast<size_t>((trans_b ? s.n : s.k) * ldb), 2);
        auto c = test::random_floats(static_cast<size_t>(s.m * ldc), 3);
        auto want = c;
        gemm_f32(trans_b, s.m, s.n, s.k, 0.7f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        gemm_f32_reference(trans_b, s.m, s.n, s.k, 0.7f, a.data(), lda, b.data(), ldb, beta, want.data(), ldc);
        EXPECT_LE(test::compare(c.data(), want.data(), c.size()).max_rel, 1e-5)
            << s.m << "x" << s.n << "x" << s.k << " trans_b " << trans_b << " beta " << beta;
      }
}

// y[:, off : off + n] (stride ldy) += s (x downᵀ) upᵀ, against the two products done by the reference.
TEST(LowRank, SideProductMatchesReference) {
  const int64_t m = 45, k = 70, rank = 6, n = 33, ldy = 50, off = 9;
  const auto x = test::random_floats(static_cast<size_t>(m * k), 4);
  const auto down = test::random_floats(static_cast<size_t>(rank * k), 5);
  const auto up = test::random_floats(static_cast<size_t>(n * rank), 6);
  auto y = test::random_floats(static_cast<size_t>(m * ldy), 7);
  auto want = y;
  add_low_rank(x.data(), m, k, down.data(), rank, up.data(), n, 1.5f, y.data() + off, ldy);
  std::vector<float> t(static_cast<size_t>(m * rank));
  gemm_f32_reference(true, m, rank, k, 1.0f, x.data(), k, down.data(), k, 0.0f, t.data(), rank);
  gemm_f32_reference(true, m, n, rank, 1.5f, t.data(), rank, up.data(), rank, 1.0f, want.data() + off, ldy);
  EXPECT_LE(test::compare(y.data(), want.data(), y.size()).max_rel, 1e-5);
  // Columns outside [off, off + n) untouched.
  const auto before = test::random_floats(static_cast<size_t>(m * ldy), 7);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < off; ++j) EXPECT_EQ(y[i * ldy + j], before[i * ldy + j]);
    for (int64_t j = off + n; j < ldy; ++j) EXPECT_EQ(y[i * ldy + j], before[i * ldy + j]);
  }
}

}  // namespace
}  // namespace flux::kernels
