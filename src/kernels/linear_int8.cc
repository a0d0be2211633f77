// Int8Linear and the int8 quantizers (linear_int8.h): weights per output feature, activations per token,
// oneDNN's u8 x s8 -> s32 matmul, scales and bias in our epilogue. The row kernels are chosen per call from
// isa_level() (tests cap it); the scalar twins are the reference.
#include "kernels/linear_int8.h"

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "base/aligned_buffer.h"
#include "base/mapped_file.h"
#include "base/cpu.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/linear_pack.h"
#include "tensor/convert.h"
#include "tensor/quant.h"

namespace flux::kernels::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

constexpr int64_t kLayoutM = 1024;  // the M at which the prepacked layout is chosen (as linear_pack.cc)
constexpr size_t kMaxCachedM = 16;

struct RowKernels {
  float (*absmax)(const float*, int64_t);
  void (*quantize_u8)(const float*, int64_t, float, uint8_t*);
  void (*quantize_s8)(const float*, int64_t, float, int8_t*);
  void (*epilogue)(const int32_t*, int64_t, float, const float*, const int32_t*, const float*, float*);
};

RowKernels row_kernels() {
  if (isa_level() >= IsaLevel::avx2) {
    return {avx2::absmax, avx2::quantize_row_u8, avx2::quantize_row_s8, avx2::epilogue_row};
  }
  return {scalar::absmax, scalar::quantize_row_u8, scalar::quantize_row_s8, scalar::epilogue_row};
}

// Widens one storage row of `from` to f32 with the conversions the f32 product uses.
void widen_row(DType from, const void* src, float* dst, int64_t k) {
  if (is_quantized(from)) {
    dequantize_row(from, src, dst, k);
  } else {
    convert_to_f32(from, src, dst, static_cast<size_t>(k));
  }
}

struct Primitive {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

}  // namespace

int int8_weight_max() { return cpu_features().avx512_vnni ? 127 : 63; }

void quantize_weight_rows(DType from, const void* rows, int64_t n, int64_t k, int w_max, int8_t* q, float* scales,
                          int32_t* sums) {
  FLUX_CHECK(w_max >= 1 && w_max <= 127, "quantize_weight_rows: w_max must be in [1, 127], got ", w_max);
  const RowKernels rk = row_kernels();
  const size_t src_row = dtype_nbytes(from, k);
  const auto* src = static_cast<const uint8_t*>(rows);
  parallel_for(
      n,
      [&](int64_t a, int64_t b) {
        thread_local std::vector<float> row;
        row.resize(static_cast<size_t>(k));
        for (int64_t r = a; r < b; ++r) {
          widen_row(from, src + static_cast<size_t>(r) * src_row, row.data(), k);
          const float amax = rk.absmax(row.data(), k);
          // A NaN or infinite weight would poison every output of its feature: refuse it by name.
          FLUX_CHECK(std::isfinite(amax), "int8 weights: row ", r, " holds a NaN or infinite value");
          const float scale = amax > 0 ? amax / static_cast<float>(w_max) : 1.0f;
          int8_t* qr = q + r * k;
          rk.quantize_s8(row.data(), k, amax > 0 ? static_cast<float>(w_max) / amax : 0.0f, qr);
          int32_t sum = 0;
          for (int64_t i = 0; i < k; ++i) sum += qr[i];
          scales[r] = scale;
          sums[r] = sum;
        }
      },
      std::max<int64_t>(1, 16384 / k));
}

void quantize_activation_rows(const float* x, int64_t m, int64_t k, uint8_t* q, float* scales) {
  const RowKernels rk = row_kernels();
  parallel_for(
      m,
      [&](int64_t a, int64_t b) {
        for (int64_t r = a; r < b; ++r) {
          const float amax = rk.absmax(x + r * k, k);
          scales[r] = amax > 0 ? amax / 127.0f : 1.0f;
          rk.quantize_u8(x + r * k, k, amax > 0 ? 127.0f / amax : 0.0f, q + r * k);
        }
      },
      std::max<int64_t>(1, 16384 / k));
}

void int8_epilogue(const int32_t* acc, int64_t m, int64_t width, const float* sx, const float* sw, const int32_t* comp,
                   const float* bias, float* y, int64_t ldy) {
  const RowKernels rk = row_kernels();
  parallel_for(
      m,
      [&](int64_t a, int64_t b) {
        for (int64_t r = a; r < b; ++r) rk.epilogue(acc + r * width, width, sx[r], sw, comp, bias, y + r * ldy);
      },
      std::max<int64_t>(1, 16384 / width));
}

struct Int8Linear::Impl {
  int64_t n = 0, k = 0;
  WeightMode mode = WeightMode::prepacked;
  int w_max = 63;
  Tensor weight;            // storage form, per_call mode only
  std::vector<float> bias;  // [N] or empty
  int64_t panel = 0;        // output features per product (all N when prepacked)
  // Prepacked: the weight in oneDNN's layout for [K, N], its scales and zero-point compensation (128 sum q).
  dnnl::memory::desc packed_md;
  AlignedBuffer packed;
  std::vector<float> scales;
  std::vector<int32_t> comp;

  mutable std::mutex mutex;
  mutable std::map<std::pair<int64_t, int64_t>, std::shared_ptr<const Primitive>> by_m;  // (M, panel width)

  // Prepacked: the packed layout; per_call: the panel rows as quantized, [width, K] int8 = [K, width] "ba"
  // (oneDNN's AVX2 int8 gemm repacks its operand itself: measured as fast as a reordered weight).
  dnnl::memory::desc weights_md(int64_t width) const {
    if (mode == WeightMode::prepacked) return packed_md;
    return dnnl::memory::desc({k, width}, dt::s8, tag::ba);
  }

  std::shared_ptr<const Primitive> primitive(int64_t m, int64_t width) const {
    std::lock_guard lock(mutex);
    const auto key = std::make_pair(m, width);
    if (by_m.size() >= kMaxCachedM && by_m.find(key) == by_m.end()) by_m.clear();
    auto& slot = by_m[key];
    if (!slot) {
      const dnnl::memory::desc src({m, k}, dt::u8, tag::ab);
      const dnnl::memory::desc dst({m, width}, dt::s32, tag::ab);
      dnnl::primitive_attr attr;  // scratch memory is ours (run's per-thread buffer), as in linear.cc
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights_md(width), dst), attr, dnnl_cpu_engine());
      slot = std::make_shared<const Primitive>(Primitive{pd, dnnl::matmul(pd)});
    }
    return slot;
  }

  void run(const Primitive& p, const uint8_t* xq, const int8_t* w, int32_t* acc) const {
    dnnl::engine& eng = dnnl_cpu_engine();
    dnnl::memory src_mem(p.pd.src_desc(), eng, const_cast<uint8_t*>(xq));
    dnnl::memory w_mem(p.pd.weights_desc(), eng, const_cast<int8_t*>(w));
    dnnl::memory dst_mem(p.pd.dst_desc(), eng, acc);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, dst_mem}};
    thread_local AlignedBuffer scratch;  // grown only, per thread
    if (const dnnl::memory::desc md = p.pd.scratchpad_desc(); md.get_size() > 0) {
      scratch.resize(md.get_size());
      args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(md, eng, scratch.data()));
    }
    default_pool().adopt_caller();  // oneDNN runs on the pool's OpenMP threads
    dnnl::stream stream(eng);
    p.prim.execute(stream, args);
    stream.wait();
  }
};

Int8Linear::Int8Linear(Tensor weight, std::vector<float> bias, WeightMode mode, int64_t panel)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.n = weight.dim(0);
  im.k = weight.dim(1);
  im.mode = mode;
  im.w_max = int8_weight_max();
  im.bias = std::move(bias);
  im.panel = mode == WeightMode::prepacked ? im.n : std::clamp<int64_t>(panel, 1, im.n);
  if (mode == WeightMode::per_call) {
    im.weight = std::move(weight);
    return;
  }
  // Quantize every row into a plain [N, K] int8 copy, then reorder it into the layout oneDNN picks.
  std::vector<int8_t> plain(static_cast<size_t>(im.n * im.k));
  im.scales.resize(static_cast<size_t>(im.n));
  std::vector<int32_t> sums(static_cast<size_t>(im.n));
  quantize_weight_rows(weight.dtype(), weight.raw(), im.n, im.k, im.w_max, plain.data(), im.scales.data(), sums.data());
  release_file_pages(weight.raw(), weight.nbytes());  // quantized: the mapped file's pages leave our RSS
  im.comp.resize(sums.size());
  for (size_t i = 0; i < sums.size(); ++i) im.comp[i] = 128 * sums[i];
  const dnnl::memory::desc src({kLayoutM, im.k}, dt::u8, tag::ab);
  const dnnl::memory::desc wany({im.k, im.n}, dt::s8, tag::any);
  const dnnl::memory::desc dst({kLayoutM, im.n}, dt::s32, tag::ab);
  im.packed_md = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wany, dst), dnnl_cpu_engine()).weights_desc();
  im.packed.resize(im.packed_md.get_size());
  dnnl::engine& eng = dnnl_cpu_engine();
  dnnl::memory from({{im.k, im.n}, dt::s8, tag::ba}, eng, plain.data());
  dnnl::memory to(im.packed_md, eng, im.packed.data());
  default_pool().adopt_caller();
  dnnl::stream stream(eng);
  dnnl::reorder(from, to).execute(stream, from, to);
  stream.wait();
}

Int8Linear::~Int8Linear() = default;

size_t Int8Linear::packed_bytes() const { return impl_->mode == WeightMode::prepacked ? impl_->packed.size() : 0; }

void Int8Linear::forward(const float* x, int64_t m, float* y) const {
  const Impl& im = *impl_;
  // Per-thread scratch, grown only.
  thread_local AlignedBuffer xq, xs, wq, ws, wsum, acc;
  xq.resize(static_cast<size_t>(m * im.k));
  xs.resize(static_cast<size_t>(m) * sizeof(float));
  quantize_activation_rows(x, m, im.k, xq.as<uint8_t>(), xs.as<float>());
  for (int64_t n0 = 0; n0 < im.n; n0 += im.panel) {
    const int64_t width = std::min(im.panel, im.n - n0);
    const int8_t* w = im.packed.as<int8_t>();
    const float* sw = im.scales.data();
    const int32_t* comp = im.comp.data();
    if (im.mode == WeightMode::per_call) {
      wq.resize(static_cast<size_t>(width * im.k));
      ws.resize(static_cast<size_t>(width) * sizeof(float));
      wsum.resize(static_cast<size_t>(width) * sizeof(int32_t));
      const auto* rows = static_cast<const uint8_t*>(im.weight.raw()) + dtype_nbytes(im.weight.dtype(), n0 * im.k);
      auto* sums = wsum.as<int32_t>();
      quantize_weight_rows(im.weight.dtype(), rows, width, im.k, im.w_max, wq.as<int8_t>(), ws.as<float>(), sums);
      for (int64_t j = 0; j < width; ++j) sums[j] *= 128;
      w = wq.as<int8_t>();
      sw = ws.as<float>();
      comp = sums;
    }
    // One panel: the s32 products land in y itself (same size) and the epilogue converts them in place.
    int32_t* out = reinterpret_cast<int32_t*>(y);
    if (width < im.n) {
      acc.resize(static_cast<size_t>(m * width) * sizeof(int32_t));
      out = acc.as<int32_t>();
    }
    im.run(*im.primitive(m, width), xq.as<uint8_t>(), w, out);
    int8_epilogue(out, m, width, xs.as<float>(), sw, comp, im.bias.empty() ? nullptr : im.bias.data() + n0, y + n0,
                  im.n);
  }
}

namespace scalar {

float absmax(const float* x, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  // std::max drops NaN; report it so callers can refuse it.
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(x[i])) return x[i];
  return m;
}

void quantize_row_u8(const float* x, int64_t n, float inv_scale, uint8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::clamp(std::nearbyint(x[i] * inv_scale), -127.0f, 127.0f);
    q[i] = static_cast<uint8_t>(static_cast<int>(v) + 128);
  }
}

void quantize_row_s8(const float* x, int64_t n, float inv_scale, int8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] * inv_scale), -127.0f, 127.0f));
  }
}

void epilogue_row(const int32_t* acc, int64_t n, float sx, const float* sw, const int32_t* comp, const float* bias,
                  float* y) {
  for (int64_t j = 0; j < n; ++j) {
    // One rounding for product and bias, as the AVX2 twin's vfmadd.
    const float a = static_cast<float>(acc[j] - comp[j]), s = sx * sw[j];
    y[j] = bias ? std::fma(a, s, bias[j]) : a * s;
  }
}

}  // namespace scalar
}  // namespace flux::kernels::detail
