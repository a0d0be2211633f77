// kernels::Conv2d on oneDNN's direct convolution, and FeatureMap's layout conversions. The weight is reordered
// into the primitive's layout once (at the first input shape; again only if a later shape's primitive wants
// another layout); primitives are cached per (input size, input block). Activations come in and go out in the
// layout the primitive picks (format `any` for the destination), so consecutive layers never reorder.
// bf16 compute: the input is converted to bf16 in its own layout (one pass), weights are bf16, output f32.
// Plain path (ConvMode::per_call, or FLUX_CPU=scalar): conv2d() on [C, H, W] (kernels/conv.h).
#include "kernels/conv_layer.h"

#include <array>
#include <atomic>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/linear_pack.h"

namespace flux::kernels {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& engine() { return detail::dnnl_cpu_engine(); }

tag tag_of_block(int64_t block) {
  switch (block) {
    case 1:
      return tag::nchw;
    case 8:
      return tag::nChw8c;
    case 16:
      return tag::nChw16c;
    default:
      return tag::undef;
  }
}

// 1, 8 or 16 if `md` is nchw / nChw8c / nChw16c of its dims and type, else 0.
int64_t block_of(const dnnl::memory::desc& md) {
  for (int64_t block : {1, 8, 16}) {
    if (md == dnnl::memory::desc(md.dims(), md.data_type(), tag_of_block(block))) return block;
  }
  return 0;
}

// Offset of (channel c, pixel p) in a layout of `block` with hw pixels per channel.
inline int64_t at(int64_t c, int64_t p, int64_t hw, int64_t block) {
  return ((c / block) * hw + p) * block + c % block;
}

}  // namespace

// ---- FeatureMap ----

void FeatureMap::reshape(int64_t channels, int64_t height, int64_t width, int64_t block) {
  FLUX_CHECK(channels > 0 && height > 0 && width > 0 && block > 0, "FeatureMap: bad shape ", channels, "x", height, "x",
             width, " block ", block);
  c_ = channels, h_ = height, w_ = width, block_ = block;
  buf_.resize(static_cast<size_t>(n_floats()) * sizeof(float));
}

void FeatureMap::from_plain(const float* chw, int64_t channels, int64_t height, int64_t width, int64_t block) {
  reshape(channels, height, width, block);
  const int64_t hw = h_ * w_, b = block_;
  float* out = data();
  parallel_for(n_blocks(), [&](int64_t cb0, int64_t cb1) {
    for (int64_t cb = cb0; cb < cb1; ++cb) {
      for (int64_t p = 0; p < hw; ++p) {
        for (int64_t l = 0; l < b; ++l) {
          const int64_t c = cb * b + l;
          out[(cb * hw + p) * b + l] = c < c_ ? chw[c * hw + p] : 0.0f;
        }
      }
    }
  });
}

void FeatureMap::to_plain(float* chw) const {
  const int64_t hw = h_ * w_;
  const float* in = data();
  parallel_for(c_, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t p = 0; p < hw; ++p) chw[c * hw + p] = in[at(c, p, hw, block_)];
  });
}

void FeatureMap::to_rows(float* rows) const {
  const int64_t hw = h_ * w_;
  const float* in = data();
  parallel_for(hw, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < c_; ++c) rows[p * c_ + c] = in[at(c, p, hw, block_)];
  });
}

void FeatureMap::add_rows(const float* rows) {
  const int64_t hw = h_ * w_;
  float* out = data();
  parallel_for(hw, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < c_; ++c) out[at(c, p, hw, block_)] += rows[p * c_ + c];
  });
}

void FeatureMap::reblock(int64_t block, FeatureMap& out) const {
  FLUX_CHECK(&out != this, "FeatureMap::reblock: out must not be the input");
  out.reshape(c_, h_, w_, block);
  const int64_t hw = h_ * w_, b = block;
  const float* in = data();
  float* o = out.data();
  parallel_for(out.n_blocks(), [&](int64_t cb0, int64_t cb1) {
    for (int64_t cb = cb0; cb < cb1; ++cb)
      for (int64_t p = 0; p < hw; ++p)
        for (int64_t l = 0; l < b; ++l) {
          const int64_t c = cb * b + l;
          o[(cb * hw + p) * b + l] = c < c_ ? in[at(c, p, hw, block_)] : 0.0f;
        }
  });
}

// ---- the block oneDNN prefers ----

int64_t conv_preferred_block() {
  switch (isa_level()) {
    case IsaLevel::scalar:
      return 1;
    case IsaLevel::avx2:
      return 8;
    default:
      return 16;
  }
}

namespace {
std::atomic<bool> g_winograd{true};
}  // namespace

void set_conv_winograd(bool on) { g_winograd.store(on); }

bool conv_winograd_applies(int64_t out_channels, int64_t in_channels, int64_t kernel, int64_t stride, DType compute) {
  return compute == DType::bf16 && conv_bf16_supported() && g_winograd.load() && isa_level() == IsaLevel::avx512 &&
         kernel == 3 && stride == 1 && in_channels % 16 == 0 && out_channels % 16 == 0;
}

bool conv_bf16_supported() {
  static const bool ok = [] {
    if (!cpu_detected().avx512_bf16) return false;
    try {
      const dnnl::memory::desc src({1, 32, 8, 8}, dt::bf16, tag::any), wei({32, 32, 3, 3}, dt::bf16, tag::any);
      const dnnl::memory::desc dst({1, 32, 8, 8}, dt::f32, tag::any);
      const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference,
                                                 dnnl::algorithm::convolution_direct, src, wei, dnnl::memory::desc(),
                                                 dst, {1, 1}, {1, 1}, {1, 1});
      dnnl::convolution_forward::primitive_desc pd(desc, engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}

// ---- Conv2d ----

struct Conv2d::Impl {
  Tensor weight;            // [out, in, k, k] as given
  std::vector<float> bias;  // [out] or empty
  Conv2dParams p;           // channels, kernel, stride, padding (height/width set per call)
  DType compute = DType::f32;
  ConvMode mode = ConvMode::cached;
  // The weight in the Winograd layout oneDNN uses from 64x64 inputs on (reordered at construction: the transform
  // takes ~0.1 s for a 512 -> 512 layer). A shape whose Winograd primitive wants another layout runs direct, so
  // there is never a second transformed copy (4x the f32 weight).
  mutable std::shared_ptr<dnnl::memory> wino_weights;
  bool winograd = false;            // conv_winograd_applies
  mutable bool wino_tried = false;  // the transform was attempted

  // Makes wino_weights once (under `mutex`); leaves it null where this oneDNN has no Winograd kernel.
  void prepare_winograd_locked() const {
    if (!winograd || wino_tried) return;
    wino_tried = true;
    try {
      const dnnl::memory::desc src({1, p.in_channels, 64, 64}, dt::f32, tag::nChw16c);
      const dnnl::memory::desc wei({p.out_channels, p.in_channels, 3, 3}, dt::f32, tag::any);
      const dnnl::memory::desc dst({1, p.out_channels, 64, 64}, dt::f32, tag::nChw16c);
      const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference,
                                                 dnnl::algorithm::convolution_winograd, src, wei, dnnl::memory::desc(),
                                                 dst, {1, 1}, {p.pad_top, p.pad_left}, {p.pad_bottom, p.pad_right});
      const dnnl::convolution_forward::primitive_desc pd(desc, engine());
      wino_weights = weights_in(pd.weights_desc());
      std::erase(weights, wino_weights);  // held as wino_weights only
    } catch (const dnnl::error&) {        // direct
    }
  }

  struct Primitive {
    dnnl::convolution_forward::primitive_desc pd;
    dnnl::convolution_forward prim;
    int64_t dst_block = 1;
    bool f32_src = true;                    // the primitive reads f32 (else the input is rounded to bf16 first)
    std::shared_ptr<dnnl::memory> weights;  // in pd.weights_desc()
  };
  mutable std::mutex mutex;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, std::shared_ptr<const Primitive>> by_shape;  // (H, W, block)
  mutable std::vector<std::shared_ptr<dnnl::memory>> weights;  // reordered copies, one per layout asked for

  dt compute_dt() const { return compute == DType::bf16 ? dt::bf16 : dt::f32; }

  Conv2dParams params_for(int64_t height, int64_t width) const {
    Conv2dParams q = p;
    q.height = height;
    q.width = width;
    return q;
  }

  // The weight reordered into `md` (made once per distinct layout).
  std::shared_ptr<dnnl::memory> weights_in(const dnnl::memory::desc& md) const {
    for (const auto& w : weights)
      if (w->get_desc() == md) return w;
    const Tensor w32 = weight.dtype() == DType::f32 ? weight : weight.to(DType::f32);
    dnnl::memory user({{p.out_channels, p.in_channels, p.kernel, p.kernel}, dt::f32, tag::oihw}, engine(),
                      const_cast<float*>(w32.data<float>()));
    auto packed = std::make_shared<dnnl::memory>(md, engine());
    default_pool().adopt_caller();
    dnnl::stream s(engine());
    dnnl::reorder(user, *packed).execute(s, user, *packed);
    s.wait();
    weights.push_back(packed);
    return packed;
  }

  std::shared_ptr<const Primitive> primitive(int64_t height, int64_t width, int64_t block) const {
    std::lock_guard lock(mutex);
    auto& slot = by_shape[{height, width, block}];
    if (slot) return slot;
    prepare_winograd_locked();
    const Conv2dParams q = params_for(height, width);
    const dnnl::memory::desc bias_md =
        bias.empty() ? dnnl::memory::desc() : dnnl::memory::desc({q.out_channels}, dt::f32, tag::a);
    const dnnl::memory::dims dst_dims{1, q.out_channels, q.out_height(), q.out_width()};
    auto build = [&](bool wino) {
      const dt src_dt = wino ? dt::f32 : compute_dt();
      const dnnl::memory::desc src({1, q.in_channels, height, width}, src_dt, tag_of_block(block));
      const dnnl::memory::desc wei({q.out_channels, q.in_channels, q.kernel, q.kernel}, src_dt, tag::any);
      auto make = [&](const dnnl::memory::desc& dst) {
        const dnnl::convolution_forward::desc desc(
            dnnl::prop_kind::forward_inference,
            wino ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct, src, wei, bias_md, dst,
            {q.stride, q.stride}, {q.pad_top, q.pad_left}, {q.pad_bottom, q.pad_right});
        // Scratch memory is ours (Scratch below): in oneDNN's default mode a primitive made on one thread holds
        // that thread's global scratchpad, which leaks when the thread ends before the primitive (the loader
        // thread's warm-up decode; LeakSanitizer showed 864 KiB on AVX-512).
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        return dnnl::convolution_forward::primitive_desc(desc, attr, engine());
      };
      auto prim = std::make_shared<Primitive>();
      prim->pd = make(dnnl::memory::desc(dst_dims, dt::f32, tag::any));
      prim->dst_block = block_of(prim->pd.dst_desc());
      if (prim->dst_block == 0) {  // a layout FeatureMap cannot hold: ask for the input's
        prim->pd = make(dnnl::memory::desc(dst_dims, dt::f32, tag_of_block(block)));
        prim->dst_block = block;
      }
      prim->f32_src = src_dt == dt::f32;
      return prim;
    };
    // Winograd where it applies (its input block is 16: not the first layer's plain input), else direct; also
    // direct when this oneDNN has no Winograd kernel for the shape.
    std::shared_ptr<Primitive> prim;
    if (wino_weights && block == 16) {
      try {
        prim = build(true);
        if (prim->pd.weights_desc() != wino_weights->get_desc()) prim.reset();
      } catch (const dnnl::error&) {
      }
    }
    if (!prim) prim = build(false);
    prim->prim = dnnl::convolution_forward(prim->pd);
    prim->weights = prim->f32_src && wino_weights && prim->pd.weights_desc() == wino_weights->get_desc()
                        ? wino_weights
                        : weights_in(prim->pd.weights_desc());
    slot = prim;
    return slot;
  }

  void forward_plain(const FeatureMap& x_in, FeatureMap& y) const {
    FeatureMap plain;
    const FeatureMap* x = &x_in;
    if (x_in.block() != 1) {
      x_in.reblock(1, plain);
      x = &plain;
    }
    const Conv2dParams q = params_for(x->height(), x->width());
    y.reshape(q.out_channels, q.out_height(), q.out_width(), 1);
    const Tensor w32 = weight.dtype() == DType::f32 ? weight : weight.to(DType::f32);
    conv2d(q, x->data(), w32.data<float>(), bias.empty() ? nullptr : bias.data(), y.data());
  }

  void forward(const FeatureMap& x_in, FeatureMap& y) const {
    FLUX_CHECK(x_in.channels() == p.in_channels, "Conv2d: expected ", p.in_channels, " input channels, got ",
               x_in.channels());
    FLUX_CHECK(&x_in != &y, "Conv2d: the output must not be the input");
    if (mode == ConvMode::per_call || isa_level() == IsaLevel::scalar) return forward_plain(x_in, y);
    FeatureMap reblocked;
    const FeatureMap* x = &x_in;
    if (tag_of_block(x_in.block()) == tag::undef) {
      x_in.reblock(conv_preferred_block(), reblocked);
      x = &reblocked;
    }
    const std::shared_ptr<const Primitive> prim = primitive(x->height(), x->width(), x->block());
    const dnnl::memory::desc dst_md = prim->pd.dst_desc();
    y.reshape(p.out_channels, dst_md.dims()[2], dst_md.dims()[3], prim->dst_block);
    FLUX_CHECK(y.capacity_bytes() >= dst_md.get_size(), "Conv2d: output layout larger than the FeatureMap");
    default_pool().adopt_caller();  // oneDNN runs on the pool's OpenMP threads
    dnnl::stream s(engine());
    const dnnl::memory::desc src_f32({1, p.in_channels, x->height(), x->width()}, dt::f32, tag_of_block(x->block()));
    dnnl::memory src(src_f32, engine(), const_cast<float*>(x->data()));
    if (!prim->f32_src) {  // one pass: f32 -> bf16, same layout
      dnnl::memory src16(prim->pd.src_desc(), engine());
      dnnl::reorder(src, src16).execute(s, src, src16);
      src = src16;
    }
    dnnl::memory dst(dst_md, engine(), y.data());
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *prim->weights}, {DNNL_ARG_DST, dst}};
    if (!bias.empty()) {
      args.emplace(DNNL_ARG_BIAS,
                   dnnl::memory({{p.out_channels}, dt::f32, tag::a}, engine(), const_cast<float*>(bias.data())));
    }
    thread_local AlignedBuffer scratch;  // grown only, per thread: concurrent calls never share it
    const dnnl::memory::desc scratch_md = prim->pd.scratchpad_desc();
    if (scratch_md.get_size() > 0) {
      scratch.resize(scratch_md.get_size());
      args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratch_md, engine(), scratch.data()));
    }
    prim->prim.execute(s, args);
    s.wait();
  }
};

Conv2d::Conv2d() = default;
Conv2d::~Conv2d() = default;
Conv2d::Conv2d(Conv2d&&) noexcept = default;
Conv2d& Conv2d::operator=(Conv2d&&) noexcept = default;

Conv2d::Conv2d(Tensor weight, Tensor bias, const Conv2dParams& padding, DType compute, ConvMode mode)
    : impl_(std::make_unique<Impl>()) {
  FLUX_CHECK(weight.ndim() == 4 && weight.dim(2) == weight.dim(3) && is_float(weight.dtype()),
             "Conv2d: expected a float weight [out, in, k, k], got ", weight.describe());
  FLUX_CHECK(compute == DType::f32 || compute == DType::bf16, "Conv2d: compute dtype f32 or bf16, got ",
             dtype_name(compute));
  Impl& m = *impl_;
  m.p = padding;
  m.p.out_channels = weight.dim(0);
  m.p.in_channels = weight.dim(1);
  m.p.kernel = weight.dim(2);
  m.weight = std::move(weight);
  if (bias.defined()) {
    FLUX_CHECK(bias.numel() == m.p.out_channels, "Conv2d: bias ", bias.describe(), " for ", m.p.out_channels,
               " outputs");
    const Tensor b32 = bias.to(DType::f32);
    m.bias.assign(b32.data<float>(), b32.data<float>() + b32.numel());
  }
  m.compute = compute == DType::bf16 && conv_bf16_supported() ? DType::bf16 : DType::f32;
  m.mode = mode;
  m.winograd = mode == ConvMode::cached &&
               conv_winograd_applies(m.p.out_channels, m.p.in_channels, m.p.kernel, m.p.stride, m.compute);
}

int64_t Conv2d::in_channels() const { return impl_->p.in_channels; }
int64_t Conv2d::out_channels() const { return impl_->p.out_channels; }
DType Conv2d::compute_dtype() const { return impl_->compute; }

void Conv2d::prepare() const {
  FLUX_CHECK(impl_ != nullptr, "Conv2d: not made");
  std::lock_guard lock(impl_->mutex);
  impl_->prepare_winograd_locked();
}

void Conv2d::forward(const FeatureMap& x, FeatureMap& y) const {
  FLUX_CHECK(impl_ != nullptr, "Conv2d: not made");
  impl_->forward(x, y);
}

}  // namespace flux::kernels
