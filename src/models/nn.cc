#include "models/nn.h"

#include <algorithm>
#include <atomic>

#include "kernels/activation.h"
#include "kernels/conv.h"
#include "kernels/norm.h"

namespace flux::nn {
namespace {

int64_t rows_of(const Tensor& x, int64_t dim) {
  FLUX_CHECK(x.dtype() == DType::f32 && x.ndim() >= 1 && x.dim(-1) == dim, "expected f32 [..., ", dim, "], got ",
             x.describe());
  return x.numel() / dim;
}

}  // namespace

namespace {
std::atomic<bool> g_int8_everywhere{false};
}  // namespace

void detail::set_int8_everywhere(bool on) { g_int8_everywhere = on; }

kernels::Precision precision_without_int8() {
  const kernels::Precision p = kernels::default_precision();
  return p == kernels::Precision::int8 && !g_int8_everywhere.load() ? kernels::Precision::automatic : p;
}

Linear Linear::bind(WeightStore& store, const std::string& prefix, int64_t in, int64_t out, bool bias) {
  Tensor w = store.require(prefix + "weight", {out, in});
  Tensor b = bias ? store.require_f32(prefix + "bias", {out}) : Tensor();
  Linear l;
  if (w.defined() && (!bias || b.defined())) {
    l.op = kernels::Linear(w, b, kernels::default_weight_mode(), precision_without_int8());
  }
  return l;
}

LayerNorm LayerNorm::bind(WeightStore& store, const std::string& prefix, int64_t dim, float eps) {
  LayerNorm n;
  n.weight = store.require_f32(prefix + "weight", {dim});
  n.bias = store.require_f32(prefix + "bias", {dim});
  n.dim = dim;
  n.eps = eps;
  return n;
}

LayerNorm LayerNorm::plain(int64_t dim, float eps) {
  LayerNorm n;
  n.dim = dim;
  n.eps = eps;
  return n;
}

Tensor LayerNorm::forward(const Tensor& x) const {
  const int64_t rows = rows_of(x, dim);
  Tensor y = Tensor::empty(DType::f32, x.shape());
  kernels::layer_norm(x.data<float>(), y.mut<float>(), rows, dim, weight.defined() ? weight.data<float>() : nullptr,
                      bias.defined() ? bias.data<float>() : nullptr, eps);
  return y;
}

RMSNorm RMSNorm::bind(WeightStore& store, const std::string& name, int64_t dim, float eps) {
  RMSNorm n;
  n.weight = store.require_f32(name, {dim});
  n.dim = dim;
  n.eps = eps;
  return n;
}

Tensor RMSNorm::forward(const Tensor& x) const {
  const int64_t rows = rows_of(x, dim);
  Tensor y = Tensor::empty(DType::f32, x.shape());
  kernels::rms_norm(x.data<float>(), y.mut<float>(), rows, dim, weight.data<float>(), eps);
  return y;
}

GroupNorm GroupNorm::bind(WeightStore& store, const std::string& prefix, int64_t channels, int64_t groups, float eps) {
  GroupNorm n;
  n.weight = store.require_f32(prefix + "weight", {channels});
  n.bias = store.require_f32(prefix + "bias", {channels});
  n.channels = channels;
  n.groups = groups;
  n.eps = eps;
  return n;
}

Tensor GroupNorm::forward(const Tensor& x) const {
  FLUX_CHECK(x.dtype() == DType::f32 && x.ndim() == 3 && x.dim(0) == channels, "GroupNorm: expected f32 [", channels,
             ", H, W], got ", x.describe());
  Tensor y = Tensor::empty(DType::f32, x.shape());
  kernels::group_norm(x.data<float>(), y.mut<float>(), channels, x.dim(1) * x.dim(2), groups, weight.data<float>(),
                      bias.data<float>(), eps);
  return y;
}

Conv2d Conv2d::bind(WeightStore& store, const std::string& prefix, int64_t in, int64_t out, int64_t kernel,
                    int64_t stride, int64_t pad) {
  Conv2d c;
  c.weight = store.require_f32(prefix + "weight", {out, in, kernel, kernel});
  c.bias = store.require_f32(prefix + "bias", {out});
  c.in = in;
  c.out = out;
  c.kernel = kernel;
  c.stride = stride;
  const int64_t p = pad < 0 ? kernel / 2 : pad;
  c.pad_top = c.pad_bottom = c.pad_left = c.pad_right = p;
  return c;
}

Tensor Conv2d::forward(const Tensor& x) const {
  FLUX_CHECK(x.dtype() == DType::f32 && x.ndim() == 3 && x.dim(0) == in, "Conv2d: expected f32 [", in, ", H, W], got ",
             x.describe());
  kernels::Conv2dParams p;
  p.in_channels = in;
  p.out_channels = out;
  p.height = x.dim(1);
  p.width = x.dim(2);
  p.kernel = kernel;
  p.stride = stride;
  p.pad_top = pad_top;
  p.pad_bottom = pad_bottom;
  p.pad_left = pad_left;
  p.pad_right = pad_right;
  Tensor y = Tensor::empty(DType::f32, {out, p.out_height(), p.out_width()});
  kernels::conv2d(p, x.data<float>(), weight.data<float>(), bias.defined() ? bias.data<float>() : nullptr,
                  y.mut<float>());
  return y;
}

Tensor split_heads(const Tensor& x, int64_t n_heads) {
  FLUX_CHECK(x.dtype() == DType::f32 && x.ndim() == 2 && x.dim(1) % n_heads == 0, "split_heads: expected f32 [L, ",
             n_heads, " * D], got ", x.describe());
  const int64_t len = x.dim(0), head_dim = x.dim(1) / n_heads;
  Tensor y = Tensor::empty(DType::f32, {n_heads, len, head_dim});
  const float* src = x.data<float>();
  float* dst = y.mut<float>();
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t l = 0; l < len; ++l)
      std::copy_n(src + (l * n_heads + h) * head_dim, head_dim, dst + (h * len + l) * head_dim);
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  FLUX_CHECK(a.dtype() == DType::f32 && b.dtype() == DType::f32 && a.shape() == b.shape(),
             "add: shapes differ: ", a.describe(), " vs ", b.describe());
  Tensor y = Tensor::empty(DType::f32, a.shape());
  kernels::add(a.data<float>(), b.data<float>(), y.mut<float>(), a.numel());
  return y;
}

Tensor gelu_tanh(Tensor x) {
  if (!x.writable()) x = x.clone();
  kernels::gelu_tanh(x.data<float>(), x.mut<float>(), x.numel());
  return x;
}

Tensor silu(Tensor x) {
  if (!x.writable()) x = x.clone();
  kernels::silu(x.data<float>(), x.mut<float>(), x.numel());
  return x;
}

}  // namespace flux::nn
