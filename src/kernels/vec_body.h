// The row kernels of one instruction set, written once over a vector type V and included (inside a namespace
// of its own: scalar, avx2 or avx512) by simd_scalar.cc, simd_avx2.cc and simd_avx512.cc.
//
// V provides: T, W (lanes), load/store (unaligned), set1, zero, add, sub, mul, div, fmadd(a, b, c) = a*b + c,
// max, min, round (to nearest), pow2i (2^n for integral n in [-126, 127]), zero_if_less(x, lo, r)
// (r where x >= lo, else 0), reduce_add, reduce_max; where W > 1 also (for RoPE's adjacent pairs)
// load_dup_pairs(p) (W / 2 floats, each twice: p0 p0 p1 p1 ...), swap_pairs(x) (x1 x0 x3 x2 ...) and
// fmaddsub(a, b, c) (a*b - c in even lanes, a*b + c in odd ones).
//
// No #include here and no std:: inline functions, so each ISA's copy stays in its own namespace (the linker
// must never pick an AVX-512 instantiation for a baseline caller).

namespace {

using T = V::T;
constexpr int W = V::W;

inline T load_tail(const float* p, int64_t n, float pad) {
  float tmp[W];
  for (int i = 0; i < W; ++i) tmp[i] = i < n ? p[i] : pad;
  return V::load(tmp);
}
inline void store_tail(float* p, T v, int64_t n) {
  float tmp[W];
  V::store(tmp, v);
  for (int64_t i = 0; i < n; ++i) p[i] = tmp[i];
}

// exp(x), Cephes expf's range reduction and polynomial (about 1 ulp); exp(x < -87.3) = 0, x > 88 clamps.
inline T vexp(T x) {
  const T xc = V::min(V::max(x, V::set1(-87.3365f)), V::set1(88.0f));
  const T n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
  T r = V::fmadd(n, V::set1(-0.693359375f), xc);
  r = V::fmadd(n, V::set1(2.12194440e-4f), r);
  T p = V::set1(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
  const T e = V::fmadd(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
  return V::zero_if_less(x, -87.3365f, V::mul(e, V::pow2i(n)));
}

// x * sigmoid(c x) = x / (1 + exp(-c x)): no cancellation for large negative x.
inline T x_sigmoid(T x, T cx) { return V::div(x, V::add(V::set1(1.0f), vexp(V::sub(V::zero(), cx)))); }

inline T gelu_v(T x) {
  // 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
  const T x3 = V::mul(V::mul(x, x), x);
  const T u = V::mul(V::set1(0.7978845608028654f), V::fmadd(V::set1(0.044715f), x3, x));
  return x_sigmoid(x, V::add(u, u));
}
inline T silu_v(T x) { return x_sigmoid(x, x); }
inline T quick_gelu_v(T x) { return x_sigmoid(x, V::mul(V::set1(1.702f), x)); }
inline T exp_v(T x) { return vexp(x); }

template <T (*F)(T)>
void map1(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, F(V::load(x + i)));
  if (i < n) store_tail(y + i, F(load_tail(x + i, n - i, 0.0f)), n - i);
}

void gelu_tanh(const float* x, float* y, int64_t n) { map1<gelu_v>(x, y, n); }
void silu(const float* x, float* y, int64_t n) { map1<silu_v>(x, y, n); }
void quick_gelu(const float* x, float* y, int64_t n) { map1<quick_gelu_v>(x, y, n); }
void exp_(const float* x, float* y, int64_t n) { map1<exp_v>(x, y, n); }

void add(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::add(V::load(a + i), V::load(b + i)));
  for (; i < n; ++i) y[i] = a[i] + b[i];
}
void mul(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::mul(V::load(a + i), V::load(b + i)));
  for (; i < n; ++i) y[i] = a[i] * b[i];
}
void scale_shift(const float* x, float* y, int64_t n, const float* a, const float* b) {
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::fmadd(V::load(x + i), V::load(a + i), V::load(b + i)));
  for (; i < n; ++i) y[i] = x[i] * a[i] + b[i];
}
void affine(const float* x, float* y, int64_t n, float a, float b) {
  const T va = V::set1(a), vb = V::set1(b);
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::fmadd(V::load(x + i), va, vb));
  for (; i < n; ++i) y[i] = x[i] * a + b;
}
void add_gated(float* x, const float* y, const float* g, int64_t n) {
  int64_t i = 0;
  if (g == nullptr) {
    add(x, y, x, n);
    return;
  }
  for (; i + W <= n; i += W) V::store(x + i, V::fmadd(V::load(g + i), V::load(y + i), V::load(x + i)));
  for (; i < n; ++i) x[i] += g[i] * y[i];
}
void scale(float* x, int64_t n, float a) {
  const T va = V::set1(a);
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(x + i, V::mul(V::load(x + i), va));
  for (; i < n; ++i) x[i] *= a;
}

float sum(const float* x, int64_t n) {
  T s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = V::add(s0, V::load(x + i));
    s1 = V::add(s1, V::load(x + i + W));
  }
  for (; i + W <= n; i += W) s0 = V::add(s0, V::load(x + i));
  if (i < n) s1 = V::add(s1, load_tail(x + i, n - i, 0.0f));
  return V::reduce_add(V::add(s0, s1));
}
float sum_sq_dev(const float* x, int64_t n, float mean) {
  const T m = V::set1(mean);
  T s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const T d0 = V::sub(V::load(x + i), m), d1 = V::sub(V::load(x + i + W), m);
    s0 = V::fmadd(d0, d0, s0);
    s1 = V::fmadd(d1, d1, s1);
  }
  for (; i + W <= n; i += W) {
    const T d = V::sub(V::load(x + i), m);
    s0 = V::fmadd(d, d, s0);
  }
  if (i < n) {
    const T d = V::sub(load_tail(x + i, n - i, mean), m);
    s1 = V::fmadd(d, d, s1);
  }
  return V::reduce_add(V::add(s0, s1));
}
float max(const float* x, int64_t n) {
  T m = V::set1(-__builtin_inff());
  int64_t i = 0;
  for (; i + W <= n; i += W) m = V::max(m, V::load(x + i));
  if (i < n) m = V::max(m, load_tail(x + i, n - i, -__builtin_inff()));
  return V::reduce_max(m);
}
float exp_sub_sum(float* x, int64_t n, float m) {
  const T vm = V::set1(m);
  T s = V::zero();
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const T e = vexp(V::sub(V::load(x + i), vm));
    V::store(x + i, e);
    s = V::add(s, e);
  }
  if (i < n) {
    const T e = vexp(V::sub(load_tail(x + i, n - i, -__builtin_inff()), vm));  // pad lanes give exp(-inf) = 0
    store_tail(x + i, e, n - i);
    s = V::add(s, e);
  }
  return V::reduce_add(s);
}

void softmax_row(float* x, int64_t n) {
  if (n <= 0) return;
  const float s = exp_sub_sum(x, n, max(x, n));
  scale(x, n, 1.0f / s);
}

void layer_norm_row(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps) {
  if (n <= 0) return;
  const float mean = sum(x, n) / static_cast<float>(n);
  const float var = sum_sq_dev(x, n, mean) / static_cast<float>(n);
  const float inv = 1.0f / __builtin_sqrtf(var + eps);
  // y = (x - mean) * inv * gamma + beta
  const T vm = V::set1(mean), vi = V::set1(inv);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    T v = V::mul(V::sub(V::load(x + i), vm), vi);
    if (gamma) v = V::mul(v, V::load(gamma + i));
    if (beta) v = V::add(v, V::load(beta + i));
    V::store(y + i, v);
  }
  for (; i < n; ++i) {
    float v = (x[i] - mean) * inv;
    if (gamma) v *= gamma[i];
    if (beta) v += beta[i];
    y[i] = v;
  }
}

void rms_norm_row(const float* x, float* y, int64_t n, const float* gamma, float eps) {
  if (n <= 0) return;
  const float inv = 1.0f / __builtin_sqrtf(sum_sq_dev(x, n, 0.0f) / static_cast<float>(n) + eps);
  const T vi = V::set1(inv);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    T v = V::mul(V::load(x + i), vi);
    if (gamma) v = V::mul(v, V::load(gamma + i));
    V::store(y + i, v);
  }
  for (; i < n; ++i) y[i] = gamma ? x[i] * inv * gamma[i] : x[i] * inv;
}

// y = (1 + scale) * LayerNorm(x) + shift (no affine of its own): FLUX's modulated pre-norm. The same operations
// as layer_norm_row then scale_shift with a = 1 + scale, in one pass over the row.
void layer_norm_modulate_row(const float* x, float* y, int64_t n, const float* shift, const float* scale, float eps) {
  if (n <= 0) return;
  const float mean = sum(x, n) / static_cast<float>(n);
  const float var = sum_sq_dev(x, n, mean) / static_cast<float>(n);
  const float inv = 1.0f / __builtin_sqrtf(var + eps);
  const T vm = V::set1(mean), vi = V::set1(inv), one = V::set1(1.0f);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const T t = V::mul(V::sub(V::load(x + i), vm), vi);
    V::store(y + i, V::fmadd(t, V::add(one, V::load(scale + i)), V::load(shift + i)));
  }
  for (; i < n; ++i) y[i] = (x[i] - mean) * inv * (1.0f + scale[i]) + shift[i];
}

// y = rope(x / sqrt(mean(x^2) + eps) * gamma): FLUX's QKNorm then apply_rope on one head (n even), in one
// pass. cos, sin: [n / 2]; pair j: (y0, y1) -> (c y0 - s y1, s y0 + c y1). VV is V (a template, so the pair
// operations are needed only where W > 1).
template <typename VV>
void rms_norm_rope_row_body(const float* x, float* y, int64_t n, const float* gamma, float eps, const float* cos,
                            const float* sin) {
  if (n <= 0) return;
  const float inv = 1.0f / __builtin_sqrtf(sum_sq_dev(x, n, 0.0f) / static_cast<float>(n) + eps);
  int64_t i = 0;
  if constexpr (VV::W > 1) {
    const T vi = VV::set1(inv);
    for (; i + W <= n; i += W) {
      const T v = VV::mul(VV::mul(VV::load(x + i), vi), VV::load(gamma + i));
      const T c = VV::load_dup_pairs(cos + i / 2), s = VV::load_dup_pairs(sin + i / 2);
      VV::store(y + i, VV::fmaddsub(v, c, VV::mul(VV::swap_pairs(v), s)));
    }
  }
  for (; i + 1 < n; i += 2) {
    const float y0 = x[i] * inv * gamma[i], y1 = x[i + 1] * inv * gamma[i + 1];
    const float c = cos[i / 2], s = sin[i / 2];
    y[i] = c * y0 - s * y1;
    y[i + 1] = s * y0 + c * y1;
  }
}
void rms_norm_rope_row(const float* x, float* y, int64_t n, const float* gamma, float eps, const float* cos,
                       const float* sin) {
  rms_norm_rope_row_body<V>(x, y, n, gamma, eps, cos, sin);
}

// C[mr, nr] (+)= sum_k ap[k, 0:MR] (x) bp[k, 0:NR]; the MR x NV accumulators stay in registers.
template <int MR, int NV>
void gemm_micro(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int64_t mr, int64_t nr,
                bool accumulate) {
  constexpr int NR = NV * W;
  T acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = V::zero();
  for (int64_t k = 0; k < kc; ++k) {
    T b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) b[j] = V::load(bp + j * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const T a = V::set1(ap[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = V::fmadd(a, b[j], acc[i][j]);
    }
    ap += MR;
    bp += NR;
  }
  if (mr == MR && nr == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        float* p = c + i * ldc + j * W;
        V::store(p, accumulate ? V::add(V::load(p), acc[i][j]) : acc[i][j]);
      }
    return;
  }
  float tmp[MR * NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) V::store(tmp + i * NR + j * W, acc[i][j]);
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + tmp[i * NR + j];
}

}  // namespace

const IsaKernels kernels = {
    .name = kName,
    .mr = kMR,
    .nr = kNV * W,
    .gemm_micro = gemm_micro<kMR, kNV>,
    .gelu_tanh = gelu_tanh,
    .silu = silu,
    .quick_gelu = quick_gelu,
    .exp = exp_,
    .add = add,
    .mul = mul,
    .scale_shift = scale_shift,
    .affine = affine,
    .add_gated = add_gated,
    .softmax_row = softmax_row,
    .layer_norm_row = layer_norm_row,
    .rms_norm_row = rms_norm_row,
    .layer_norm_modulate_row = layer_norm_modulate_row,
    .rms_norm_rope_row = rms_norm_rope_row,
    .sum = sum,
    .sum_sq_dev = sum_sq_dev,
    .max = max,
    .exp_sub_sum = exp_sub_sum,
    .scale = scale,
};
