// conv2d's fast path: oneDNN's direct convolution (it picks blocked layouts; the image and weight are
// reordered in and the result out per call, which costs a few memory passes against 2 Cout Cin k^2 flops
// per output pixel). oneDNN caches the primitives of repeated shapes itself.
#include <dnnl.hpp>

#include "base/thread_pool.h"
#include "kernels/conv.h"
#include "kernels/internal.h"

namespace flux::kernels::detail {

void conv2d_onednn(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  const dnnl::memory::dims src_dims{1, p.in_channels, p.height, p.width};
  const dnnl::memory::dims wei_dims{p.out_channels, p.in_channels, p.kernel, p.kernel};
  const dnnl::memory::dims dst_dims{1, p.out_channels, p.out_height(), p.out_width()};
  const dnnl::memory::desc src_any(src_dims, dt::f32, tag::any), wei_any(wei_dims, dt::f32, tag::any);
  const dnnl::memory::desc dst_any(dst_dims, dt::f32, tag::any);
  const dnnl::memory::desc bias_md =
      bias ? dnnl::memory::desc({p.out_channels}, dt::f32, tag::a) : dnnl::memory::desc();
  const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                             src_any, wei_any, bias_md, dst_any, {p.stride, p.stride},
                                             {p.pad_top, p.pad_left}, {p.pad_bottom, p.pad_right});
  const dnnl::convolution_forward::primitive_desc pd(desc, engine);
  default_pool().adopt_caller();  // oneDNN runs on the pool's OpenMP threads
  dnnl::stream stream(engine);

  // User memory in plain layouts; reorder where the primitive wants another.
  dnnl::memory user_src({src_dims, dt::f32, tag::nchw}, engine, const_cast<float*>(x));
  dnnl::memory user_wei({wei_dims, dt::f32, tag::oihw}, engine, const_cast<float*>(w));
  dnnl::memory user_dst({dst_dims, dt::f32, tag::nchw}, engine, y);
  auto prepare = [&](dnnl::memory& user, const dnnl::memory::desc& want) {
    if (user.get_desc() == want) return user;
    dnnl::memory m(want, engine);
    dnnl::reorder(user, m).execute(stream, user, m);
    return m;
  };
  dnnl::memory src = prepare(user_src, pd.src_desc());
  dnnl::memory wei = prepare(user_wei, pd.weights_desc());
  dnnl::memory dst = pd.dst_desc() == user_dst.get_desc() ? user_dst : dnnl::memory(pd.dst_desc(), engine);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, engine, const_cast<float*>(bias)));
  dnnl::convolution_forward(pd).execute(stream, args);
  if (dst != user_dst) dnnl::reorder(dst, user_dst).execute(stream, dst, user_dst);
  stream.wait();
}

}  // namespace flux::kernels::detail
