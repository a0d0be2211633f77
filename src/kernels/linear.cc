// kernels::Linear on oneDNN's matmul: y[M, N] = x[M, K] W^T + b, W stored [N, K] (read by oneDNN as a
// [K, N] matrix). WeightMode::prepacked packs the weight once at construction into the blocked layout oneDNN
// prefers (format any; linear_pack.h). WeightMode::per_call keeps the weight in its storage form, and:
//  - under bf16 products, every stored form (bf16 included) goes to gemm_stored.h's kernel, which converts
//    tiles inside its own blocking, at every M. Widening panels for oneDNN ran at the machine's memcpy rate
//    without overlapping the product, and oneDNN reading bf16 rows where they lie (format ba; its brgemm copies
//    them into its blocking inside its loops) ran at 0.86-0.98x of prepacked against 0.94-1.05x through
//    gemm_stored (bench_matmul stored, Zen 5, M = 256 to 4608);
//  - under f32 products, an f32 weight is read where it lies (format ba, one call over all N); any other form
//    is widened one panel of output features at a time into a reused per-thread scratch of about 2 MB (an L2's
//    worth), each panel's product then copied into its columns of y (a strided destination sends oneDNN to a
//    slower kernel), or, from kBlockedFromM rows, packed blocked per panel. Memory for the weight stays its
//    storage form plus one panel: no full-size widened copy ever exists.
// Compute type: f32 for f32 weights; for bf16/f16/f8 and ggml block-quantized weights (dequantized with
// tensor/quant.h) see linear_compute_dtype() (bf16 x bf16 -> f32 where AVX512_BF16 is fast, else f32 with the
// weight widened). Primitives are cached per (M, panel width) (the token count varies).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/aligned_buffer.h"
#include "base/cpu.h"
#include "base/error.h"
#include "base/log.h"
#include "base/mapped_file.h"
#include "base/thread_pool.h"
#include "kernels/gemm_stored.h"
#include "kernels/internal.h"
#include "kernels/linear_int8.h"
#include "kernels/linear_pack.h"
#include "kernels/matmul.h"
#include "tensor/convert.h"

namespace flux::kernels {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& cpu_engine() { return detail::dnnl_cpu_engine(); }

constexpr size_t kMaxCachedM = 16;

// Whether this CPU's bf16 dot products beat f32 FMA by enough to pay for rounding the activations.
// FLUX_MATMUL_BF16 is read at each call (each Linear made); the probe runs once.
bool bf16_is_faster() {
  if (const char* env = std::getenv("FLUX_MATMUL_BF16")) return std::strcmp(env, "0") != 0;
  static const bool faster = [] {
    const double speedup = detail::avx512::bf16_dot_speedup();
    log_info("matmul: bf16 dot product runs at ", speedup, "x the f32 FMA flops: 16-bit weights use ",
             speedup > 1.2 ? "bf16" : "f32", " products");
    return speedup > 1.2;
  }();
  return faster;
}

std::atomic<int> g_force_bf16{-1};
// per_call scratch per panel (int8, and blocked panels from kBlockedFromM rows): stays in L3-sized memory.
std::atomic<int64_t> g_panel_bytes{8 << 20};
// per_call, below kBlockedFromM rows: widened panels of about this many bytes stay in L2 while oneDNN reads
// them (measured at M = 256 on Zen 4: 2 MB panels ran 3-5% faster than 8 MB ones).
constexpr int64_t kWidenPanelBytes = 2 << 20;
// per_call: from this many rows of x on, panels are packed blocked once per call instead: oneDNN's brgemm
// copies a stored-rows weight into its blocking for every block of rows, so that copy grows with M, and at
// M = 4608 (FLUX 1024x1024) it cost 3-7% of the product against 1-3% for packing (bench_matmul quant, Zen 4).
constexpr int64_t kDefaultBlockedFromM = 2048;
std::atomic<int64_t> kBlockedFromM{kDefaultBlockedFromM};  // tests lower it (set_linear_blocked_from_m)
std::atomic<bool> g_direct_pack{true};
// per_call bf16 products, at every M: gemm_stored.h's kernel (converting tiles inside its own blocking) instead
// of the stored bf16 rows, or widened or blocked panels of any other form, handed to oneDNN.
std::atomic<bool> g_stored_gemm{true};

// The direct packer's view of md, logging once (debug) when it does not know the layout.
std::optional<detail::PackLayout> direct_layout(const dnnl::memory::desc& md) {
  if (!g_direct_pack.load()) return std::nullopt;
  std::string why;
  auto layout = detail::recognise_pack_layout(md, &why);
  static std::once_flag logged;
  if (!layout) {
    std::call_once(logged, [&] { log_debug("matmul: weights pack in two passes (widen, reorder): ", why); });
  }
  return layout;
}

struct Primitive {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

}  // namespace

// How the product walks the weight: column panels of `panel` output features, in which layout, and whether
// each panel is packed (prepacked mode: once, at construction) or read where it lies.
struct Panels {
  int64_t panel = 0;
  bool blocked = false;                  // oneDNN's preferred layout (linear_weight_layout), else the stored rows (ba)
  bool pack = false;                     // per_call: each panel is packed or widened into scratch first
  dnnl::memory::desc panel_md, tail_md;  // layouts of a full panel and of the last, narrower one
  std::optional<detail::PackLayout> panel_pack, tail_pack;  // the two as pack_direct writes them, if it can
  const dnnl::memory::desc& md(int64_t width) const { return width == panel ? panel_md : tail_md; }
};

struct Linear::Impl {
  int64_t n = 0, k = 0;
  WeightMode mode = WeightMode::prepacked;
  DType compute = DType::f32;  // f32 or bf16: the dtype oneDNN multiplies; i8: int8 below does the products
  std::unique_ptr<detail::Int8Linear> int8;
  Tensor weight;               // storage form [N, K]; kept only in per_call mode
  bool stored_gemm = false;    // per_call bf16 products: gemm_stored_bf16 takes this weight (at every M)
  std::vector<float> bias;     // [N] or empty
  // prepacked: `rows` is all of N, blocked, packed once into `packed`. per_call: `rows` (the stored rows, or
  // panels widened to them) below kBlockedFromM rows of x, `blocks` (panels packed blocked) from there on.
  Panels rows, blocks;
  AlignedBuffer packed;  // prepacked mode: the whole weight in rows.panel_md's layout

  mutable std::mutex mutex;
  mutable std::map<std::pair<int64_t, int64_t>, std::shared_ptr<const Primitive>> by_m;  // (M, panel width)

  dt compute_dt() const { return compute == DType::bf16 ? dt::bf16 : dt::f32; }
  const Panels& panels_for(int64_t m) const {
    return mode == WeightMode::per_call && m >= kBlockedFromM.load() ? blocks : rows;
  }

  Panels make_panels(int64_t panel, bool blocked, bool pack, bool know_direct) const {
    Panels p;
    p.panel = panel, p.blocked = blocked, p.pack = pack;
    auto layout = [&](int64_t width) {
      return blocked ? detail::linear_weight_layout(k, width, compute, !bias.empty())
                     : dnnl::memory::desc({k, width}, compute_dt(), tag::ba);
    };
    p.panel_md = layout(panel);
    if (know_direct) p.panel_pack = direct_layout(p.panel_md);
    if (n % panel != 0) {
      p.tail_md = layout(n % panel);
      if (know_direct) p.tail_pack = direct_layout(p.tail_md);
    }
    return p;
  }

  // A product of M rows with `width` output features into a dense [M, width] destination (oneDNN 2.6 runs
  // a strided destination, y's columns in place, on a slower kernel, gemm:jit). M decides the panels, so
  // (M, width) names the weight layout too.
  std::shared_ptr<const Primitive> primitive(int64_t m, int64_t width) const {
    std::lock_guard lock(mutex);
    // A handful of M values recur (text length, image tokens); drop them all if many sizes come by. Calls in
    // flight keep their primitive alive through the shared_ptr.
    const auto key = std::make_pair(m, width);
    if (by_m.size() >= kMaxCachedM && by_m.find(key) == by_m.end()) by_m.clear();
    auto& slot = by_m[key];
    if (!slot) {
      const dnnl::memory::desc src({m, k}, compute_dt(), tag::ab);
      const dnnl::memory::desc dst({m, width}, dt::f32, tag::ab);
      const dnnl::memory::desc b =
          bias.empty() ? dnnl::memory::desc() : dnnl::memory::desc({1, width}, dt::f32, tag::ab);
      const dnnl::memory::desc& w = panels_for(m).md(width);
      // Scratch memory is ours (forward's per-thread buffer): in oneDNN's default mode a primitive holds the
      // global scratchpad of the thread that made it, which leaks when that thread ends first.
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, b, dst), attr, cpu_engine());
      slot = std::make_shared<const Primitive>(Primitive{pd, dnnl::matmul(pd)});
    }
    return slot;
  }

  // Packs output features [n0, n0 + width) of the storage-form weight into `out` (p.md(width)'s layout):
  // directly where the layout is one pack_direct knows, else through `plain` and oneDNN's reorder, or for
  // the stored-rows layout a plain widening of rows (pack_two_pass).
  void pack(const Panels& p, const Tensor& w, int64_t n0, int64_t width, AlignedBuffer& plain, void* out) const {
    const auto* src = static_cast<const uint8_t*>(w.raw()) + dtype_nbytes(w.dtype(), n0 * k);
    const auto& direct = width == p.panel ? p.panel_pack : p.tail_pack;
    if (direct) {
      detail::pack_direct(*direct, w.dtype(), src, out);
    } else {
      detail::pack_two_pass(p.md(width), w.dtype(), src, plain, out);
    }
  }
};

void detail::force_bf16_products(int mode) { g_force_bf16 = mode; }
void detail::set_linear_panel_bytes(int64_t bytes) { g_panel_bytes = bytes > 0 ? bytes : int64_t{8 << 20}; }
void detail::set_linear_direct_pack(bool on) { g_direct_pack = on; }
void detail::set_linear_blocked_from_m(int64_t m) { kBlockedFromM = m > 0 ? m : kDefaultBlockedFromM; }
void detail::set_linear_stored_gemm(bool on) { g_stored_gemm = on; }

namespace {
std::atomic<Precision> g_default_precision{Precision::automatic};

// The dtype 16/8-bit weights multiply in under Precision::automatic.
DType automatic_compute_dtype() {
  if (!cpu_features().avx512_bf16) return DType::f32;
  const int forced = g_force_bf16.load();
  const bool bf16 = forced >= 0 ? forced == 1 : bf16_is_faster();
  return bf16 ? DType::bf16 : DType::f32;
}

// What a weight of dtype `stored` multiplies in at precision p.
DType compute_dtype_for(Precision p, DType stored) {
  switch (p) {
    case Precision::f32: return DType::f32;
    case Precision::bf16: return DType::bf16;
    case Precision::int8: return DType::i8;
    case Precision::automatic: break;
  }
  return stored == DType::f32 ? DType::f32 : automatic_compute_dtype();
}
}  // namespace

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::automatic: return "auto";
    case Precision::f32: return "f32";
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
  }
  return "?";
}

Precision parse_precision(const std::string& s) {
  for (Precision p : {Precision::automatic, Precision::f32, Precision::bf16, Precision::int8}) {
    if (s == precision_name(p)) return p;
  }
  throw Error("precision: expected auto, f32, bf16 or int8, got '" + s + "'");
}

void check_precision_supported(Precision p) {
  FLUX_CHECK(p != Precision::bf16 || cpu_features().avx512_bf16,
             "precision bf16 needs the AVX512_BF16 CPU feature, which this CPU (", cpu_features().describe(),
             ") lacks: use auto, f32 or int8");
}

void set_default_precision(Precision p) {
  check_precision_supported(p);
  g_default_precision.store(p);
}
Precision default_precision() { return g_default_precision.load(); }

DType linear_compute_dtype(Precision p) {
  return p == Precision::automatic ? automatic_compute_dtype() : compute_dtype_for(p, DType::bf16);
}
DType linear_compute_dtype() { return linear_compute_dtype(default_precision()); }

Linear::Linear() = default;
Linear::~Linear() = default;
Linear::Linear(Linear&&) noexcept = default;
Linear& Linear::operator=(Linear&&) noexcept = default;

namespace {
std::atomic<WeightMode> g_default_mode{WeightMode::prepacked};
}  // namespace

void set_default_weight_mode(WeightMode mode) { g_default_mode.store(mode); }
WeightMode default_weight_mode() { return g_default_mode.load(); }

Linear::Linear(Tensor weight, Tensor bias, WeightMode mode, Precision precision) : impl_(std::make_unique<Impl>()) {
  FLUX_CHECK(weight.defined(), "Linear: weight is undefined");
  FLUX_CHECK(weight.ndim() == 2, "Linear: weight must be 2-D [out, in], got ", weight.describe());
  const DType d = weight.dtype();
  FLUX_CHECK(d == DType::f32 || d == DType::bf16 || d == DType::f16 || d == DType::f8_e4m3 || is_quantized(d),
             "Linear: weight dtype must be f32, bf16, f16, f8_e4m3 or a ggml block type, got ", weight.describe());
  Impl& im = *impl_;
  im.n = weight.dim(0);
  im.k = weight.dim(1);
  FLUX_CHECK(im.n > 0 && im.k > 0, "Linear: empty weight ", weight.describe());
  im.mode = mode;
  check_precision_supported(precision);
  im.compute = compute_dtype_for(precision, d);
  if (bias.defined()) {
    FLUX_CHECK(bias.numel() == im.n && is_float(bias.dtype()), "Linear: bias must be float [", im.n, "], got ",
               bias.describe());
    const Tensor b = bias.to(DType::f32);
    im.bias.assign(b.data<float>(), b.data<float>() + im.n);
  }
  if (im.compute == DType::i8) {
    // per_call panels of about g_panel_bytes of int8 rows (a multiple of 64 features).
    const int64_t panel = std::max<int64_t>(64, g_panel_bytes.load() / im.k / 64 * 64);
    im.int8 = std::make_unique<detail::Int8Linear>(std::move(weight), std::move(im.bias), mode, panel);
    return;
  }
  const int64_t row_bytes = im.k * static_cast<int64_t>(dtype_size(im.compute));
  auto fit = [&](int64_t bytes) { return std::min(im.n, std::max<int64_t>(64, bytes / row_bytes / 64 * 64)); };
  if (mode == WeightMode::prepacked) {
    im.rows = im.make_panels(im.n, true, false, true);
    im.packed.resize(im.rows.panel_md.get_size());
    AlignedBuffer plain;
    im.pack(im.rows, weight, 0, im.n, plain, im.packed.data());
    release_file_pages(weight.raw(), weight.nbytes());  // copied: the mapped file's pages leave our RSS
    return;
  }
  // per_call: the stored rows where they are in the compute dtype (one panel), else panels of about
  // kWidenPanelBytes widened (fewer bytes when a test sets a smaller g_panel_bytes); blocked panels of about
  // g_panel_bytes. Panels are multiples of 64 features.
  const bool widen = d != im.compute;
  im.rows = im.make_panels(widen ? fit(std::min(g_panel_bytes.load(), kWidenPanelBytes)) : im.n, false, widen, false);
  im.blocks = im.make_panels(fit(g_panel_bytes.load()), true, true, true);
  im.stored_gemm = (widen || d == DType::bf16) && im.compute == DType::bf16 && detail::gemm_stored_supports(d, im.k);
  im.weight = std::move(weight);
}

int64_t Linear::in_features() const { return impl_ ? impl_->k : 0; }
int64_t Linear::out_features() const { return impl_ ? impl_->n : 0; }
DType Linear::compute_dtype() const { return impl_ ? impl_->compute : DType::f32; }
size_t Linear::packed_bytes() const {
  if (!impl_) return 0;
  if (impl_->int8) return impl_->int8->packed_bytes();
  return impl_->mode == WeightMode::prepacked ? impl_->packed.size() : 0;
}

void Linear::forward(const float* x, int64_t m, float* y) const {
  FLUX_CHECK(impl_ != nullptr, "Linear::forward on an undefined Linear");
  FLUX_CHECK(m >= 0, "Linear::forward: negative row count ", m);
  if (m == 0) return;
  const Impl& im = *impl_;
  if (im.int8) {
    im.int8->forward(x, m, y);
    return;
  }
  // Per-thread scratch, grown only: concurrent calls from different threads never share it.
  thread_local AlignedBuffer x_bf16, plain, packed, y_panel, scratch;

  const void* src = x;
  if (im.compute == DType::bf16) {
    x_bf16.resize(static_cast<size_t>(m * im.k) * 2);
    auto* xb = x_bf16.as<uint16_t>();
    parallel_for(
        m,
        [&](int64_t r0, int64_t r1) {
          convert_f32_to_bf16(x + r0 * im.k, xb + r0 * im.k, static_cast<size_t>((r1 - r0) * im.k));
        },
        std::max<int64_t>(1, 4096 / im.k));
    src = xb;
    if (im.stored_gemm && g_stored_gemm.load()) {
      detail::gemm_stored_bf16(
          {im.weight.dtype(), im.weight.raw(), im.n, im.k, xb, m, im.bias.empty() ? nullptr : im.bias.data(), y});
      return;
    }
  }
  dnnl::engine& eng = cpu_engine();
  const Panels& pp = im.panels_for(m);
  for (int64_t n0 = 0; n0 < im.n; n0 += pp.panel) {
    const int64_t width = std::min(pp.panel, im.n - n0);
    const void* weights = im.packed.data();
    if (pp.pack) {
      packed.resize(pp.md(width).get_size());
      im.pack(pp, im.weight, n0, width, plain, packed.data());
      weights = packed.data();
    } else if (im.mode == WeightMode::per_call) {
      weights = im.weight.raw();  // one panel: the stored rows are the layout
    }
    // One panel writes y directly; several write [M, width] scratch, copied into y's columns below.
    float* out = y;
    if (width < im.n) {
      y_panel.resize(static_cast<size_t>(m * width) * sizeof(float));
      out = y_panel.as<float>();
    }
    const auto p = im.primitive(m, width);
    dnnl::memory src_mem(p->pd.src_desc(), eng, const_cast<void*>(src));
    dnnl::memory w_mem(p->pd.weights_desc(), eng, const_cast<void*>(weights));
    dnnl::memory dst_mem(p->pd.dst_desc(), eng, out);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, dst_mem}};
    if (!im.bias.empty()) {
      args.emplace(DNNL_ARG_BIAS, dnnl::memory(p->pd.bias_desc(), eng, const_cast<float*>(im.bias.data() + n0)));
    }
    if (const dnnl::memory::desc md = p->pd.scratchpad_desc(); md.get_size() > 0) {
      scratch.resize(md.get_size());
      args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(md, eng, scratch.data()));
    }
    default_pool().adopt_caller();  // oneDNN runs on the pool's OpenMP threads
    dnnl::stream stream(eng);
    p->prim.execute(stream, args);
    stream.wait();
    if (out != y) {
      parallel_for(
          m,
          [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r)
              std::memcpy(y + r * im.n + n0, out + r * width, static_cast<size_t>(width) * sizeof(float));
          },
          64);
    }
  }
}

Tensor Linear::forward(const Tensor& x) const {
  FLUX_CHECK(impl_ != nullptr, "Linear::forward on an undefined Linear");
  FLUX_CHECK(x.defined() && x.ndim() >= 1 && x.dim(-1) == impl_->k, "Linear: input last dim must be ", impl_->k,
             ", got ", x.defined() ? x.describe() : std::string("undefined"));
  const Tensor xf = x.to(DType::f32);
  std::vector<int64_t> dims = x.shape().to_vector();
  dims.back() = impl_->n;
  Tensor y = Tensor::empty(DType::f32, Shape(std::span<const int64_t>(dims)));
  forward(xf.data<float>(), x.numel() / impl_->k, y.mut<float>());
  return y;
}

}  // namespace flux::kernels
