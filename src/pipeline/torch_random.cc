// Scalar twins of torch's AVX2 Box-Muller (see torch_random.h). The polynomial coefficients are Cephes' (as used
// by avx_mathfun.h); the order of operations and the fused multiply-adds are what makes the results bit-exact.
// Never let the compiler contract the remaining a * b + c here: the project builds for baseline x86-64 (no FMA).
#include "pipeline/torch_random.h"

#include <cmath>
#include <cstring>

#include "base/error.h"

namespace flux {
namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

float torch_log_f32(float x) {
  x = std::fmax(x, float_of(0x00800000u));  // smallest normal
  const int32_t exponent = static_cast<int32_t>(bits_of(x) >> 23) - 0x7f;
  x = float_of((bits_of(x) & 0x807fffffu) | bits_of(0.5f));  // mantissa in [0.5, 1)
  float e = static_cast<float>(exponent) + 1.0f;
  const bool below = x < 0.707106781186547524f;  // sqrt(1/2)
  const float tmp = below ? x : 0.0f;
  x = x - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = x * x;
  float y = 7.0376836292e-2f;
  y = std::fma(y, x, -1.1514610310e-1f);
  y = std::fma(y, x, 1.1676998740e-1f);
  y = std::fma(y, x, -1.2420140846e-1f);
  y = std::fma(y, x, 1.4249322787e-1f);
  y = std::fma(y, x, -1.6668057665e-1f);
  y = std::fma(y, x, 2.0000714765e-1f);
  y = std::fma(y, x, -2.4999993993e-1f);
  y = std::fma(y, x, 3.3333331174e-1f);
  y = y * x;
  y = std::fma(y, z, e * -2.12194440e-4f);
  y = y - z * 0.5f;
  x = x + y;
  return std::fma(e, 0.693359375f, x);
}

void torch_sincos_f32(float x, float* sin_x, float* cos_x) {
  uint32_t sign_sin = bits_of(x) & 0x80000000u;
  x = std::fabs(x);
  // Octant j (even), reduced argument x - j * pi/4 in three parts.
  int32_t j = static_cast<int32_t>(x * 1.27323954473516f);  // 4 / pi
  j = (j + 1) & ~1;
  const float y = static_cast<float>(j);
  const uint32_t swap_sin = static_cast<uint32_t>(j & 4) << 29;
  const bool use_cos_poly_for_cos = (j & 2) == 0;
  x = std::fma(y, -0.78515625f, x);
  x = std::fma(y, -2.4187564849853515625e-4f, x);
  x = std::fma(y, -3.77489497744594108e-8f, x);
  const uint32_t sign_cos = static_cast<uint32_t>(~(j - 2) & 4) << 29;
  sign_sin ^= swap_sin;
  const float z = x * x;
  float c = 2.443315711809948e-5f;
  c = std::fma(c, z, -1.388731625493765e-3f);
  c = std::fma(c, z, 4.166664568298827e-2f);
  c = c * z;
  c = std::fma(c, z, -(z * 0.5f));
  c = c + 1.0f;
  float s = -1.9515295891e-4f;
  s = std::fma(s, z, 8.3321608736e-3f);
  s = std::fma(s, z, -1.6666654611e-1f);
  s = s * z;
  s = std::fma(s, x, x);
  const float sin_v = use_cos_poly_for_cos ? s : c, cos_v = use_cos_poly_for_cos ? c : s;
  *sin_x = float_of(bits_of(sin_v) ^ sign_sin);
  *cos_x = float_of(bits_of(cos_v) ^ sign_cos);
}

std::vector<float> TorchGenerator::randn(int64_t n) {
  FLUX_CHECK(n >= 16, "torch randn: this generator reproduces tensors of >= 16 elements, got ", n);
  std::vector<float> data(static_cast<size_t>(n));
  for (auto& v : data) v = uniform_f32();
  const float two_pi = static_cast<float>(2.0 * M_PI);
  auto fill16 = [two_pi](float* d) {
    for (int j = 0; j < 8; ++j) {
      const float u1 = 1.0f - d[j];  // [0, 1) -> (0, 1] for the log
      const float u2 = d[j + 8];
      const float radius = std::sqrt(-2.0f * torch_log_f32(u1));
      float s, c;
      torch_sincos_f32(two_pi * u2, &s, &c);
      d[j] = radius * c;
      d[j + 8] = radius * s;
    }
  };
  for (int64_t i = 0; i + 16 <= n; i += 16) fill16(data.data() + i);
  if (n % 16 != 0) {
    float* tail = data.data() + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = uniform_f32();
    fill16(tail);
  }
  return data;
}

}  // namespace flux
