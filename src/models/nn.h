// Building blocks shared by the models: typed modules bound from a WeightStore by checkpoint name.
// Activations are F32 tensors, row-major, batch folded into rows ([rows, features]) unless stated.
// Small parameters (norm weights, biases, embeddings) are widened to f32 at bind time; matmul weights stay
// in storage form inside kernels::Linear.
#pragma once

#include <string>

#include "io/weight_store.h"
#include "kernels/matmul.h"
#include "tensor/tensor.h"

namespace flux::nn {

// The precision for layers kept out of int8 (the text encoders, the VAE's attention): the process default, but
// automatic where that is int8. Measured (bench_text_encoders, random T5-XXL layer): int8 products put an rms
// relative error of 3.9e-2 on a T5 layer's output (bf16 products: 6.0e-3), against 2.4e-3 on a FLUX block's
// (bench_flux_block), whose output carries its input through the residual.
kernels::Precision precision_without_int8();
namespace detail {
// Benchmarks: let precision_without_int8() return int8 too (to measure what int8 would cost those layers).
void set_int8_everywhere(bool on);
}  // namespace detail

// y = x W^T + b. Checkpoint names: prefix + "weight" [out, in], prefix + "bias" [out]. Used by the text
// encoders: bound at precision_without_int8().
struct Linear {
  kernels::Linear op;
  int lora_slot = -1;  // the FLUX transformer's: this Linear's index for run-time LoRA (models/lora_runtime.h)

  static Linear bind(WeightStore& store, const std::string& prefix, int64_t in, int64_t out, bool bias = true);
  Tensor forward(const Tensor& x) const { return op.forward(x); }  // [..., in] -> [..., out]
};

// LayerNorm over the last dim; weight/bias undefined = no affine.
struct LayerNorm {
  Tensor weight;  // F32 [dim] or undefined
  Tensor bias;    // F32 [dim] or undefined
  int64_t dim = 0;
  float eps = 1e-5f;

  static LayerNorm bind(WeightStore& store, const std::string& prefix, int64_t dim, float eps);
  static LayerNorm plain(int64_t dim, float eps);  // no affine (FLUX's norm1/norm2 and final norm)
  Tensor forward(const Tensor& x) const;
};

// RMSNorm over the last dim: x / sqrt(mean(x^2) + eps) * weight. Checkpoint name: `name` (full key).
struct RMSNorm {
  Tensor weight;  // F32 [dim]
  int64_t dim = 0;
  float eps = 1e-6f;

  static RMSNorm bind(WeightStore& store, const std::string& name, int64_t dim, float eps);
  Tensor forward(const Tensor& x) const;
};

// GroupNorm on [C, H, W] (one image). Checkpoint names: prefix + "weight", prefix + "bias".
struct GroupNorm {
  Tensor weight, bias;  // F32 [C]
  int64_t channels = 0, groups = 32;
  float eps = 1e-6f;

  static GroupNorm bind(WeightStore& store, const std::string& prefix, int64_t channels, int64_t groups, float eps);
  Tensor forward(const Tensor& x) const;  // [C, H, W] -> [C, H, W]
};

// Conv2d on [C, H, W] (one image). Checkpoint names: prefix + "weight" [out, in, k, k], prefix + "bias".
struct Conv2d {
  Tensor weight;  // F32 [out, in, k, k]
  Tensor bias;    // F32 [out]
  int64_t in = 0, out = 0, kernel = 3, stride = 1;
  int64_t pad_top = 1, pad_bottom = 1, pad_left = 1, pad_right = 1;

  static Conv2d bind(WeightStore& store, const std::string& prefix, int64_t in, int64_t out, int64_t kernel,
                     int64_t stride = 1, int64_t pad = -1);  // pad -1 = kernel / 2 on every side
  Tensor forward(const Tensor& x) const;                     // [in, H, W] -> [out, H', W']
};

// [L, H*D] -> [H, L, D]: one attention input split into heads (the layout kernels::attention takes).
Tensor split_heads(const Tensor& x, int64_t n_heads);

// Elementwise helpers on F32 tensors (new tensors; shapes must match).
Tensor add(const Tensor& a, const Tensor& b);
Tensor gelu_tanh(Tensor x);  // in place on an owned tensor, returned
Tensor silu(Tensor x);

}  // namespace flux::nn
