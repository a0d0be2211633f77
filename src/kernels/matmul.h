// Matrix products y = x W^T + b, the FLUX workhorse. x: F32 [M, K] row-major; W: [N, K] as stored in the
// checkpoint (f32, bf16, f16, f8_e4m3, or a ggml block type q4_0 ... q6_K with blocks along K); b: F32 [N] or
// none; y: F32 [M, N].
//
// The fast path is oneDNN. A Linear keeps its weight in storage form and either reorders it into oneDNN's
// blocked layout once (default) or per call, one panel of output features at a time, into a reused scratch
// buffer (WeightMode::per_call, when memory is short; see DESIGN.md). 16/8-bit and quantized weights (the
// latter dequantized exactly as ggml does) multiply bf16-rounded activations with f32 accumulation where
// AVX512_BF16 is fast, else they are widened to f32 (linear_compute_dtype); f32 weights stay f32 end to end.
#pragma once

#include <cstdint>
#include <memory>

#include "tensor/tensor.h"

namespace flux::kernels {

enum class WeightMode { prepacked, per_call };

// The mode a Linear gets when its caller does not choose one (the models' loaders). Process-wide: it is a
// memory policy, set once by whoever loads the model (Pipeline::load picks per_call when prepacking every
// weight would not fit in memory). Set it before binding weights; Linears already made keep theirs.
void set_default_weight_mode(WeightMode mode);
WeightMode default_weight_mode();

class Linear {
 public:
  Linear();
  // weight: [N, K] any of f32/bf16/f16/f8_e4m3/q4_0...q6_K (a view, e.g. of an mmap'd file, is kept as is
  // in per_call mode); bias: F32 [N] or undefined.
  Linear(Tensor weight, Tensor bias, WeightMode mode = default_weight_mode());
  ~Linear();
  Linear(Linear&&) noexcept;
  Linear& operator=(Linear&&) noexcept;

  int64_t in_features() const;
  int64_t out_features() const;
  bool defined() const { return impl_ != nullptr; }
  // Bytes this Linear holds for its weight: the packed copy in prepacked mode (N K 4 when 16/8-bit or
  // quantized weights multiply in f32, see linear_compute_dtype), 0 in per_call mode (which reads the storage
  // tensor per call).
  size_t packed_bytes() const;

  // x: [M, K] -> y: [M, N]; y must not alias x. Thread-safe for concurrent calls with distinct y.
  void forward(const float* x, int64_t m, float* y) const;
  // x: [..., K] -> [..., N] (a new owned f32 tensor).
  Tensor forward(const Tensor& x) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The dtype a Linear multiplies 16/8-bit weights in (f32 weights always stay f32): bf16 (activations rounded
// to bf16, f32 accumulation) when the CPU has AVX512_BF16 and its bf16 dot product measures faster than f32
// FMA (probed once, well under a millisecond); otherwise f32, the weight widened. FLUX_MATMUL_BF16=1 or 0
// forces the choice (still f32 without AVX512_BF16). Read at each Linear construction.
// A model whose products run in bf16 this way also runs attention's two products in bf16 (FLUX's transformer:
// AttentionParams::bf16, kernels/attention.h); FLUX_ATTENTION_BF16=0 keeps attention in f32 (read per call).
DType linear_compute_dtype();

// Plain twin: y[m, n] = sum_k x[m, k] * w[n, k] + bias[n], all f32; bias may be null.
void matmul_reference(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n);
// Our own threaded kernel (no oneDNN), y = x W^T + b with f32 W: the in-house baseline for bench/matmul.
void matmul_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n);

}  // namespace flux::kernels
