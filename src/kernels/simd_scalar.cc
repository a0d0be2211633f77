// Scalar row kernels (one lane) for CPUs without AVX2, and the dispatch between the three sets.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "base/cpu.h"
#include "kernels/internal.h"

namespace flux::kernels::detail {
namespace scalar {
namespace {

struct V {
  using T = float;
  static constexpr int W = 1;
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T set1(float x) { return x; }
  static T zero() { return 0.0f; }
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T div(T a, T b) { return a / b; }
  static T fmadd(T a, T b, T c) { return a * b + c; }
  static T max(T a, T b) { return a > b ? a : b; }
  static T min(T a, T b) { return a < b ? a : b; }
  static T round(T x) { return std::nearbyint(x); }
  static T pow2i(T n) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static T zero_if_less(T x, float lo, T r) { return x >= lo ? r : 0.0f; }
  static float reduce_add(T v) { return v; }
  static float reduce_max(T v) { return v; }
};

constexpr const char* kName = "scalar";
constexpr int kMR = 4;
constexpr int kNV = 8;

}  // namespace

#include "kernels/vec_body.h"

}  // namespace scalar

const IsaKernels& isa_kernels() {
  switch (isa_level()) {
    case IsaLevel::avx512:
      return avx512::kernels;
    case IsaLevel::avx2:
      return avx2::kernels;
    case IsaLevel::scalar:
      break;
  }
  return scalar::kernels;
}

}  // namespace flux::kernels::detail
