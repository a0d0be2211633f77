// Elementwise activations and arithmetic: threaded over chunks with parallel_for, each chunk run by the
// current ISA's row kernel (kernels/internal.h). The reference:: twins are the textbook formulas.
#include "kernels/activation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/internal.h"
#include "kernels/norm.h"

namespace flux::kernels {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per chunk: below this, threading costs more than it saves

// Runs fn(begin, end) over [0, n), threaded when n is large.
template <typename Fn>
void for_chunks(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= grain) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  parallel_for(
      n, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

// Rows of `dim` each, grouped so one chunk holds about kGrain elements.
template <typename Fn>
void for_rows(int64_t rows, int64_t dim, Fn&& fn) {
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1));
  for_chunks(rows, grain, fn);
}

}  // namespace

void gelu_tanh(const float* x, float* y, int64_t n) {
  const auto& k = detail::isa_kernels();
  for_chunks(n, kGrain, [&](int64_t b, int64_t e) { k.gelu_tanh(x + b, y + b, e - b); });
}
void silu(const float* x, float* y, int64_t n) {
  const auto& k = detail::isa_kernels();
  for_chunks(n, kGrain, [&](int64_t b, int64_t e) { k.silu(x + b, y + b, e - b); });
}
void quick_gelu(const float* x, float* y, int64_t n) {
  const auto& k = detail::isa_kernels();
  for_chunks(n, kGrain, [&](int64_t b, int64_t e) { k.quick_gelu(x + b, y + b, e - b); });
}
void softmax(float* x, int64_t rows, int64_t dim) {
  const auto& k = detail::isa_kernels();
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.softmax_row(x + r * dim, dim);
  });
}
void add(const float* a, const float* b, float* y, int64_t n) {
  const auto& k = detail::isa_kernels();
  for_chunks(n, kGrain, [&](int64_t s, int64_t e) { k.add(a + s, b + s, y + s, e - s); });
}
void mul(const float* a, const float* b, float* y, int64_t n) {
  const auto& k = detail::isa_kernels();
  for_chunks(n, kGrain, [&](int64_t s, int64_t e) { k.mul(a + s, b + s, y + s, e - s); });
}
void modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale) {
  const auto& k = detail::isa_kernels();
  std::vector<float> one_plus(static_cast<size_t>(dim)), zeros;
  for (int64_t d = 0; d < dim; ++d) one_plus[d] = 1.0f + (scale ? scale[d] : 0.0f);
  if (shift == nullptr) {
    zeros.assign(static_cast<size_t>(dim), 0.0f);
    shift = zeros.data();
  }
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.scale_shift(x + r * dim, y + r * dim, dim, one_plus.data(), shift);
  });
}
void add_gated(float* x, const float* y, const float* gate, int64_t rows, int64_t dim) {
  const auto& k = detail::isa_kernels();
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.add_gated(x + r * dim, y + r * dim, gate, dim);
  });
}
void layer_norm_modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale,
                         float eps) {
  const auto& k = detail::isa_kernels();
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.layer_norm_modulate_row(x + r * dim, y + r * dim, dim, shift, scale, eps);
  });
}
void add_gated_layer_norm_modulate(float* x, const float* r, const float* gate, float* y, int64_t rows, int64_t dim,
                                   const float* shift, const float* scale, float eps) {
  const auto& k = detail::isa_kernels();
  for_rows(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {  // the row is still in L1 when the norm reads it back
      k.add_gated(x + i * dim, r + i * dim, gate, dim);
      k.layer_norm_modulate_row(x + i * dim, y + i * dim, dim, shift, scale, eps);
    }
  });
}

namespace reference {

void gelu_tanh(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    // 0.5 v (1 + tanh(u)) written as v / (1 + exp(-2u)) (the same function): 1 + tanh(u) cancels to 0 in
    // double for u < -19 while the true value is still a normal float.
    const double v = x[i];
    const double u = std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v);
    y[i] = static_cast<float>(v / (1.0 + std::exp(-2.0 * u)));
  }
}
void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))));
}
void quick_gelu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(x[i] / (1.0 + std::exp(-1.702 * static_cast<double>(x[i]))));
  }
}
void softmax(float* x, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * dim;
    double m = -INFINITY, s = 0;
    for (int64_t d = 0; d < dim; ++d) m = std::max(m, static_cast<double>(row[d]));
    for (int64_t d = 0; d < dim; ++d) s += std::exp(row[d] - m);
    for (int64_t d = 0; d < dim; ++d) row[d] = static_cast<float>(std::exp(row[d] - m) / s);
  }
}
void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
void mul(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
void modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < dim; ++d) {
      y[r * dim + d] = x[r * dim + d] * (1.0f + (scale ? scale[d] : 0.0f)) + (shift ? shift[d] : 0.0f);
    }
}
void add_gated(float* x, const float* y, const float* gate, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < dim; ++d) x[r * dim + d] += (gate ? gate[d] : 1.0f) * y[r * dim + d];
}
void layer_norm_modulate(const float* x, float* y, int64_t rows, int64_t dim, const float* shift, const float* scale,
                         float eps) {
  reference::layer_norm(x, y, rows, dim, nullptr, nullptr, eps);
  reference::modulate(y, y, rows, dim, shift, scale);
}
void add_gated_layer_norm_modulate(float* x, const float* r, const float* gate, float* y, int64_t rows, int64_t dim,
                                   const float* shift, const float* scale, float eps) {
  reference::add_gated(x, r, gate, rows, dim);
  reference::layer_norm_modulate(x, y, rows, dim, shift, scale, eps);
}

}  // namespace reference
}  // namespace flux::kernels
