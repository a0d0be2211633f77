// A CPU generator that reproduces torch's: torch.manual_seed(seed) followed by torch.randn(n) in float32
// (n >= 16), bit for bit as torch computes it on an x86-64 CPU with AVX2 (the kernel torch dispatches to there;
// its AVX-512 build falls back to the same kernel for normal_).
//
// ATen's recipe (aten/src/ATen/native/cpu/DistributionTemplates.h, normal_fill_AVX2):
//  - the engine is mt19937 seeded with the low 32 bits of the seed (at::mt19937);
//  - every element first receives a uniform (random() & 0xffffff) * 2^-24;
//  - each block of 16 becomes normals by Box-Muller: for j < 8, u1 = 1 - d[j], u2 = d[j+8],
//    r = sqrt(-2 log u1), theta = float(2 pi) * u2, d[j] = r cos theta, d[j+8] = r sin theta;
//  - when n is not a multiple of 16, the last 16 elements are redrawn from 16 fresh uniforms and transformed.
// log, sin and cos are the Cephes single-precision polynomials that torch's avx_mathfun.h evaluates, with the
// multiply-adds fused the way GCC compiles that header (-mfma). torch_log_f32 / torch_sincos_f32 re-implement
// them in scalar code. Checked bit-exact against the stored golden noise (tests/pipeline/test_sampling.cc).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace flux {

class TorchGenerator {
 public:
  explicit TorchGenerator(uint64_t seed) : engine_(static_cast<uint32_t>(seed & 0xffffffffu)) {}
  uint32_t random() { return static_cast<uint32_t>(engine_()); }
  // at::uniform_real_distribution<float>(0, 1): 24 random bits.
  float uniform_f32() { return static_cast<float>(random() & 0xffffffu) * (1.0f / 16777216.0f); }
  // torch.randn(n) in float32; n >= 16 (smaller tensors take another path in torch, not reproduced).
  std::vector<float> randn(int64_t n);

 private:
  std::mt19937 engine_;
};

// The two transcendental functions of torch's AVX2 normal kernel, in scalar form (exposed for tests).
float torch_log_f32(float x);  // x > 0
void torch_sincos_f32(float x, float* sin_x, float* cos_x);

}  // namespace flux
