// Scaled dot-product attention, flash style: each task takes one head and a block of query rows, walks the
// keys in blocks with an online softmax (running max m and sum l per row; earlier output rescaled by
// exp(m_old - m_new)), so the scores live in a [BQ, BK] tile only. Both products (Q K^T and P V) run on the
// packed GEMM micro-kernel (kernels/internal.h); K and V are packed once per head. The bf16 path
// (AttentionParams::bf16) is attention_bf16.cc / attention_avx512.cc.
// Also RoPE on adjacent pairs (FLUX's apply_rope, flux/math.py).
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "base/aligned_buffer.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/attention_bf16.h"
#include "kernels/internal.h"
#include "kernels/norm.h"
#include "tensor/convert.h"

namespace flux::kernels {
namespace {

constexpr int64_t kBK = 256;  // keys per block (a multiple of every NR)

void check(const AttentionParams& p) {
  FLUX_CHECK(p.n_heads > 0 && p.len_q > 0 && p.len_k > 0 && p.head_dim > 0,
             "attention: n_heads, len_q, len_k, head_dim must be positive, got ", p.n_heads, ", ", p.len_q, ", ",
             p.len_k, ", ", p.head_dim);
}

}  // namespace

void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* out) {
  check(p);
  if (detail::attention_bf16_applies(p)) return detail::attention_bf16(p, q, k, v, out);
  const detail::IsaKernels& isa = detail::isa_kernels();
  const int64_t H = p.n_heads, Lq = p.len_q, Lk = p.len_k, D = p.head_dim;
  const int64_t bq_max = isa.mr * 8;
  const int64_t n_kb = (Lk + kBK - 1) / kBK;
  const int64_t d_pad = (D + isa.nr - 1) / isa.nr * isa.nr;
  const int64_t k_head = detail::packed_b_floats(Lk, D, isa.nr);  // K_h as the [n = Lk, k = D] operand
  const int64_t v_head = n_kb * kBK * d_pad;                      // V_h per key block as [k = bk, n = D]
  // Uninitialised (pack_* writes every float): no memset over what can be 100 MB at FLUX sizes.
  AlignedBuffer kpack(static_cast<size_t>(H * k_head) * sizeof(float));
  AlignedBuffer vpack(static_cast<size_t>(H * v_head) * sizeof(float));
  parallel_for(H, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      detail::pack_b_nk(k + h * Lk * D, D, Lk, D, isa.nr, kpack.as<float>() + h * k_head);
      for (int64_t jb = 0; jb < n_kb; ++jb) {
        const int64_t j0 = jb * kBK, bk = std::min(kBK, Lk - j0);
        detail::pack_b_kn(v + (h * Lk + j0) * D, D, bk, D, isa.nr, vpack.as<float>() + h * v_head + jb * kBK * d_pad);
      }
    }
  });

  const int64_t n_qb = (Lq + bq_max - 1) / bq_max;
  parallel_for(H * n_qb, [&](int64_t t0, int64_t t1) {
    std::vector<float> qp(static_cast<size_t>(detail::packed_a_floats(bq_max, D, isa.mr)));
    std::vector<float> pp(static_cast<size_t>(detail::packed_a_floats(bq_max, kBK, isa.mr)));
    std::vector<float> s(static_cast<size_t>(bq_max * kBK)), o(static_cast<size_t>(bq_max * D));
    std::vector<float> m(static_cast<size_t>(bq_max)), l(static_cast<size_t>(bq_max));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / n_qb, i0 = (t % n_qb) * bq_max, bq = std::min(bq_max, Lq - i0);
      // Q block [bq, D], pre-multiplied by the scale.
      detail::pack_a(q + (h * Lq + i0) * D, D, bq, D, isa.mr, qp.data());
      isa.scale(qp.data(), detail::packed_a_floats(bq, D, isa.mr), p.scale);
      std::fill(o.begin(), o.end(), 0.0f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.0f);
      for (int64_t jb = 0; jb < n_kb; ++jb) {
        const int64_t j0 = jb * kBK, bk = std::min(kBK, Lk - j0);
        if (p.causal && j0 > i0 + bq - 1) break;  // no row of this block sees these keys
        // S[bq, bk] = (scale Q) K_j^T
        detail::gemm_packed(isa, bq, bk, D, qp.data(), kpack.as<float>() + h * k_head + j0 * D, s.data(), kBK, false);
        for (int64_t i = 0; i < bq; ++i) {
          float* row = s.data() + i * kBK;
          if (p.bias) isa.add(row, p.bias + (h * Lq + i0 + i) * Lk + j0, row, bk);
          const int64_t n_valid = p.causal ? std::clamp<int64_t>(i0 + i - j0 + 1, 0, bk) : bk;
          const float row_max = n_valid > 0 ? isa.max(row, n_valid) : -std::numeric_limits<float>::infinity();
          const float m_new = std::max(m[i], row_max);
          if (m_new == -std::numeric_limits<float>::infinity()) {  // nothing visible yet
            std::fill(row, row + bk, 0.0f);
            continue;
          }
          const float alpha = std::exp(m[i] - m_new);  // 0 on the first visible block
          const float row_sum = isa.exp_sub_sum(row, n_valid, m_new);
          std::fill(row + n_valid, row + bk, 0.0f);
          if (alpha != 1.0f) isa.scale(o.data() + i * D, D, alpha);
          l[i] = l[i] * alpha + row_sum;
          m[i] = m_new;
        }
        // O[bq, D] += P[bq, bk] V_j[bk, D]
        detail::pack_a(s.data(), kBK, bq, bk, isa.mr, pp.data());
        detail::gemm_packed(isa, bq, D, bk, pp.data(), vpack.as<float>() + h * v_head + jb * kBK * d_pad, o.data(), D,
                            true);
      }
      for (int64_t i = 0; i < bq; ++i) {
        float* dst = out + (i0 + i) * H * D + h * D;  // [Lq, H * D]
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        isa.affine(o.data() + i * D, dst, D, inv, 0.0f);
      }
    }
  });
}

void rope(float* x, int64_t n_heads, int64_t len, int64_t head_dim, const float* cos, const float* sin) {
  FLUX_CHECK(head_dim % 2 == 0, "rope: head_dim must be even, got ", head_dim);
  const int64_t half = head_dim / 2;
  parallel_for(
      n_heads * len,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* row = x + r * head_dim;
          const int64_t l = r % len;
          const float* c = cos + l * half;
          const float* s = sin + l * half;
          for (int64_t j = 0; j < half; ++j) {
            const float x0 = row[2 * j], x1 = row[2 * j + 1];
            row[2 * j] = c[j] * x0 - s[j] * x1;
            row[2 * j + 1] = s[j] * x0 + c[j] * x1;
          }
        }
      },
      64);
}

void rms_norm_rope(const float* x, int64_t ld_x, int64_t len, int64_t n_heads, int64_t head_dim, const float* gamma,
                   float eps, const float* cos, const float* sin, float* y, int64_t ld_y) {
  FLUX_CHECK(head_dim % 2 == 0 && ld_y >= len, "rms_norm_rope: head_dim must be even (got ", head_dim,
             ") and ld_y >= len (got ", ld_y, " < ", len, ")");
  const detail::IsaKernels& isa = detail::isa_kernels();
  const int64_t half = head_dim / 2;
  parallel_for(
      len,
      [&](int64_t l0, int64_t l1) {
        for (int64_t l = l0; l < l1; ++l)
          for (int64_t h = 0; h < n_heads; ++h) {
            isa.rms_norm_rope_row(x + l * ld_x + h * head_dim, y + (h * ld_y + l) * head_dim, head_dim, gamma, eps,
                                  cos + l * half, sin + l * half);
          }
      },
      8);
}

namespace reference {

void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* out) {
  check(p);
  const int64_t H = p.n_heads, Lq = p.len_q, Lk = p.len_k, D = p.head_dim;
  std::vector<double> w(static_cast<size_t>(Lk));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < Lq; ++i) {
      const float* qi = q + (h * Lq + i) * D;
      double mx = -INFINITY;
      const int64_t n_valid = p.causal ? std::min(i + 1, Lk) : Lk;
      for (int64_t j = 0; j < n_valid; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qi[d]) * k[(h * Lk + j) * D + d];
        w[j] = dot * p.scale + (p.bias ? p.bias[(h * Lq + i) * Lk + j] : 0.0);
        mx = std::max(mx, w[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < n_valid; ++j) sum += (w[j] = std::exp(w[j] - mx));
      for (int64_t d = 0; d < D; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < n_valid; ++j) acc += w[j] * v[(h * Lk + j) * D + d];
        out[i * H * D + h * D + d] = static_cast<float>(acc / sum);
      }
    }
}

void attention_bf16(const AttentionParams& p, const float* q, const float* k, const float* v, float* out) {
  check(p);
  FLUX_CHECK(!p.causal && p.bias == nullptr, "reference::attention_bf16: no mask or bias");
  const int64_t H = p.n_heads, Lq = p.len_q, Lk = p.len_k, D = p.head_dim, block = detail::kBf16Keys;
  const auto bf16 = [](float x) { return static_cast<double>(bf16_to_f32(f32_to_bf16(x))); };
  std::vector<double> s(static_cast<size_t>(Lk)), vr(static_cast<size_t>(Lk * D)), qr(static_cast<size_t>(D));
  std::vector<double> acc(static_cast<size_t>(D));
  for (int64_t h = 0; h < H; ++h) {
    const float* kh = k + h * Lk * D;
    for (int64_t j = 0; j < Lk * D; ++j) vr[j] = bf16(v[h * Lk * D + j]);
    for (int64_t i = 0; i < Lq; ++i) {
      for (int64_t d = 0; d < D; ++d) qr[d] = bf16(q[(h * Lq + i) * D + d]);
      for (int64_t j = 0; j < Lk; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qr[d] * bf16(kh[j * D + d]);
        s[j] = dot * p.scale;
      }
      // Online softmax over key blocks: P is rounded against the running max, as the kernel rounds it.
      double m = -INFINITY, l = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j0 = 0; j0 < Lk; j0 += block) {
        const int64_t j1 = std::min(Lk, j0 + block);
        const double m_new = std::max(m, *std::max_element(s.begin() + j0, s.begin() + j1));
        const double alpha = std::exp(m - m_new);
        l *= alpha;
        for (double& a : acc) a *= alpha;
        for (int64_t j = j0; j < j1; ++j) {
          const double e = std::exp(s[j] - m_new);
          l += e;
          const double pj = bf16(static_cast<float>(e));
          for (int64_t d = 0; d < D; ++d) acc[d] += pj * vr[j * D + d];
        }
        m = m_new;
      }
      for (int64_t d = 0; d < D; ++d) out[i * H * D + h * D + d] = static_cast<float>(acc[d] / l);
    }
  }
}

void rope(float* x, int64_t n_heads, int64_t len, int64_t head_dim, const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t l = 0; l < len; ++l)
      for (int64_t j = 0; j < half; ++j) {
        float* pair = x + (h * len + l) * head_dim + 2 * j;
        const double x0 = pair[0], x1 = pair[1], c = cos[l * half + j], s = sin[l * half + j];
        pair[0] = static_cast<float>(c * x0 - s * x1);
        pair[1] = static_cast<float>(s * x0 + c * x1);
      }
}

void rms_norm_rope(const float* x, int64_t ld_x, int64_t len, int64_t n_heads, int64_t head_dim, const float* gamma,
                   float eps, const float* cos, const float* sin, float* y, int64_t ld_y) {
  for (int64_t h = 0; h < n_heads; ++h) {
    float* yh = y + h * ld_y * head_dim;
    for (int64_t l = 0; l < len; ++l)
      reference::rms_norm(x + l * ld_x + h * head_dim, yh + l * head_dim, 1, head_dim, gamma, eps);
    reference::rope(yh, 1, len, head_dim, cos, sin);
  }
}

}  // namespace reference
}  // namespace flux::kernels
