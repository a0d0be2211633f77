// Matrix products y = x W^T + b, the FLUX workhorse. x: F32 [M, K] row-major; W: [N, K] as stored in the
// checkpoint (f32, bf16, f16, f8_e4m3, or a ggml block type q4_0 ... q6_K with blocks along K); b: F32 [N] or
// none; y: F32 [M, N].
//
// The fast path is oneDNN. A Linear keeps its weight in storage form and either reorders it into oneDNN's
// blocked layout once (default) or per call, one panel of output features at a time, into a reused scratch
// buffer (WeightMode::per_call, when memory is short; see DESIGN.md). 16/8-bit and quantized weights (the
// latter dequantized exactly as ggml does) multiply bf16-rounded activations with f32 accumulation where
// AVX512_BF16 is fast, else they are widened to f32 (linear_compute_dtype); f32 weights stay f32 end to end.
// A Linear's Precision overrides that: f32 or bf16 for every weight, or int8 (weights per output feature,
// activations per token, oneDNN's u8 x s8 product with our scales: kernels/linear_int8.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tensor/tensor.h"

namespace flux::kernels {

enum class WeightMode { prepacked, per_call };

// The mode a Linear gets when its caller does not choose one (the models' loaders). Process-wide: it is a
// memory policy, set once by whoever loads the model (Pipeline::load picks per_call when prepacking every
// weight would not fit in memory). Set it before binding weights; Linears already made keep theirs.
void set_default_weight_mode(WeightMode mode);
WeightMode default_weight_mode();

// What a Linear multiplies in. automatic: f32 weights in f32, 16/8-bit and block-quantized weights in
// linear_compute_dtype() (bf16 where the CPU's bf16 dot product measures faster, else f32); f32: every
// weight widened to f32 (the exact path the golden tests use); bf16: bf16 products for every weight (needs
// AVX512_BF16: an Error names it otherwise); int8: int8 weights with per-output-feature scales and
// activations quantized per token (kernels/linear_int8.h), for every weight.
enum class Precision { automatic, f32, bf16, int8 };
const char* precision_name(Precision p);
// "auto", "f32", "bf16" or "int8"; throws Error naming the value otherwise.
Precision parse_precision(const std::string& s);
// Throws Error naming the missing CPU feature when this CPU cannot run p (bf16 without AVX512_BF16).
void check_precision_supported(Precision p);

// The precision a Linear gets when its caller does not choose one (the models' loaders). Process-wide like
// the weight mode: set once by whoever loads the model (Pipeline::load, from LoadOptions::precision) before
// binding weights; Linears already made keep theirs.
void set_default_precision(Precision p);
Precision default_precision();

class Linear {
 public:
  Linear();
  // weight: [N, K] any of f32/bf16/f16/f8_e4m3/q4_0...q6_K (a view, e.g. of an mmap'd file, is kept as is
  // in per_call mode); bias: F32 [N] or undefined.
  Linear(Tensor weight, Tensor bias, WeightMode mode = default_weight_mode(),
         Precision precision = default_precision());
  ~Linear();
  Linear(Linear&&) noexcept;
  Linear& operator=(Linear&&) noexcept;

  int64_t in_features() const;
  int64_t out_features() const;
  // The dtype this Linear multiplies in: f32, bf16 or i8.
  DType compute_dtype() const;
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

// The dtype a Linear of default_precision() multiplies 16/8-bit weights in (f32 weights stay f32 under
// Precision::automatic): f32 or bf16 as the precision says, i8 for Precision::int8; under automatic, bf16 (activations rounded
// to bf16, f32 accumulation) when the CPU has AVX512_BF16 and its bf16 dot product measures faster than f32
// FMA (probed once, well under a millisecond); otherwise f32, the weight widened. FLUX_MATMUL_BF16=1 or 0
// forces the choice (still f32 without AVX512_BF16). Read at each Linear construction.
// A model whose products run in bf16 this way also runs attention's two products in bf16 (FLUX's transformer:
// AttentionParams::bf16, kernels/attention.h); FLUX_ATTENTION_BF16=0 keeps attention in f32 (read per call).
DType linear_compute_dtype();
// The same for a Linear of precision p (e.g. the layers that never run in int8: models/nn.h).
DType linear_compute_dtype(Precision p);

// Plain twin: y[m, n] = sum_k x[m, k] * w[n, k] + bias[n], all f32; bias may be null.
void matmul_reference(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n);
// Our own threaded kernel (no oneDNN), y = x W^T + b with f32 W: the in-house baseline for bench/matmul.
void matmul_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n);

}  // namespace flux::kernels
