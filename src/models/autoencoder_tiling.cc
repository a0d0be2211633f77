// Tiled autoencoder runs (autoencoder_tiling.h). Blend weights along an axis, in output positions: 1 inside a
// tile, rising linearly across the overlap with the previous tile and falling across the overlap with the next,
// so two neighbours' weights sum to 1 at every position of their overlap; the 2-D weight is the product of the
// two axes'. The output is the weighted sum divided by the summed weights.
#include "models/autoencoder_tiling.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/log.h"
#include "base/thread_pool.h"

namespace flux {
namespace {

// Weights of the output positions [f begin_i, f end_i) of span i.
std::vector<float> ramp(const std::vector<TileSpan>& spans, size_t i, int64_t f) {
  const TileSpan s = spans[i];
  std::vector<float> w(static_cast<size_t>(f * (s.end - s.begin)), 1.0f);
  for (int64_t x = f * s.begin; x < f * s.end; ++x) {
    float v = 1.0f;
    if (i > 0 && x < f * spans[i - 1].end) {  // overlap with the previous tile: rising
      v = std::min(v, (static_cast<float>(x - f * s.begin) + 0.5f) / static_cast<float>(f * (spans[i - 1].end - s.begin)));
    }
    if (i + 1 < spans.size() && x >= f * spans[i + 1].begin) {  // overlap with the next tile: falling
      v = std::min(v, (static_cast<float>(f * s.end - x) - 0.5f) / static_cast<float>(f * (s.end - spans[i + 1].begin)));
    }
    w[static_cast<size_t>(x - f * s.begin)] = v;
  }
  return w;
}

}  // namespace

std::vector<TileSpan> tile_spans(int64_t length, int64_t tile, int64_t overlap) {
  FLUX_CHECK(length > 0 && tile > 0 && overlap >= 0, "tile_spans: bad arguments ", length, ", ", tile, ", ", overlap);
  if (tile >= length) return {{0, length}};
  overlap = std::min(overlap, tile / 2);
  const int64_t n = (length - overlap + (tile - overlap) - 1) / (tile - overlap);  // >= 2
  const int64_t size = std::min(tile, (length + (n - 1) * overlap + n - 1) / n);
  std::vector<TileSpan> spans;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t begin = static_cast<int64_t>(
        std::llround(static_cast<double>(i) * static_cast<double>(length - size) / static_cast<double>(n - 1)));
    spans.push_back({begin, begin + size});
  }
  return spans;
}

Tensor run_tiled(const Tensor& in, TileScale scale, int64_t out_channels, const VaeTiling& tiling,
                 const std::function<Tensor(const Tensor&)>& fn) {
  const int64_t in_f = scale == TileScale::encode ? 8 : 1, out_f = scale == TileScale::decode ? 8 : 1;
  const int64_t c = in.dim(0), h = in.dim(1) / in_f, w = in.dim(2) / in_f;  // latent units
  const int64_t tile = tiling.tile / 8, overlap = (tiling.overlap + 7) / 8;
  if (tiling.tile <= 0 || (tile >= h && tile >= w)) return fn(in);
  FLUX_CHECK(tile >= 1, "VAE tile size ", tiling.tile, " px: expected 0 (off) or at least 8");
  const std::vector<TileSpan> ys = tile_spans(h, tile, overlap), xs = tile_spans(w, tile, overlap);
  log_debug("autoencoder: ", in.dim(2), "x", in.dim(1), " in ", xs.size(), "x", ys.size(), " tiles of ",
            8 * (xs[0].end - xs[0].begin), "x", 8 * (ys[0].end - ys[0].begin), " px");

  const int64_t oh = h * out_f, ow = w * out_f;
  Tensor out = Tensor::zeros(DType::f32, {out_channels, oh, ow});
  std::vector<float> weight_sum(static_cast<size_t>(oh * ow), 0.0f);
  float* o = out.mut<float>();
  const float* src = in.data<float>();
  for (size_t iy = 0; iy < ys.size(); ++iy) {
    const std::vector<float> wy = ramp(ys, iy, out_f);
    for (size_t ix = 0; ix < xs.size(); ++ix) {
      const std::vector<float> wx = ramp(xs, ix, out_f);
      const int64_t y0 = ys[iy].begin * in_f, th = (ys[iy].end - ys[iy].begin) * in_f;
      const int64_t x0 = xs[ix].begin * in_f, tw = (xs[ix].end - xs[ix].begin) * in_f;
      Tensor crop = Tensor::empty(DType::f32, {c, th, tw});  // in[:, y0:y0+th, x0:x0+tw]
      float* dst = crop.mut<float>();
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < th; ++y)
          std::copy_n(src + (ch * in.dim(1) + y0 + y) * in.dim(2) + x0, tw, dst + (ch * th + y) * tw);
      const Tensor r = fn(crop);
      const int64_t rh = static_cast<int64_t>(wy.size()), rw = static_cast<int64_t>(wx.size());
      FLUX_CHECK(r.ndim() == 3 && r.dim(0) == out_channels && r.dim(1) == rh && r.dim(2) == rw,
                 "autoencoder tile: expected [", out_channels, ", ", rh, ", ", rw, "], got ", r.describe());
      const int64_t oy0 = ys[iy].begin * out_f, ox0 = xs[ix].begin * out_f;
      const float* rv = r.data<float>();
      parallel_for(rh, [&](int64_t y_begin, int64_t y_end) {
        for (int64_t y = y_begin; y < y_end; ++y) {
          for (int64_t x = 0; x < rw; ++x) {
            const float wt = wy[static_cast<size_t>(y)] * wx[static_cast<size_t>(x)];
            weight_sum[static_cast<size_t>((oy0 + y) * ow + ox0 + x)] += wt;
            for (int64_t ch = 0; ch < out_channels; ++ch)
              o[(ch * oh + oy0 + y) * ow + ox0 + x] += wt * rv[(ch * rh + y) * rw + x];
          }
        }
      });
    }
  }
  parallel_for(oh * ow, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t ch = 0; ch < out_channels; ++ch) o[ch * oh * ow + p] /= weight_sum[static_cast<size_t>(p)];
  });
  return out;
}

}  // namespace flux
