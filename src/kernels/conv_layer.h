// Convolution layers for a stack of convolutions (the VAE): activations stay in the layout oneDNN's
// convolution wants between layers, weights are reordered once, primitives are made once per input shape.
//
// A FeatureMap is one image, F32, either plain [C, H, W] (block 1) or channel-blocked nChw{block}c:
// [ceil(C / block), H, W, block], channel c at lane c % block of block c / block, padding lanes zero. The block
// is whatever the convolution primitive asks for (8 on AVX2, 16 on AVX-512: never assumed); group norm,
// upsampling and residual adds below work on any block, so only a network's input and output are reordered.
#pragma once

#include <cstdint>
#include <memory>

#include "base/aligned_buffer.h"
#include "kernels/conv.h"
#include "tensor/tensor.h"

namespace flux::kernels {

class FeatureMap {
 public:
  FeatureMap() = default;
  // Sets the shape and layout; keeps the buffer when it is large enough (the contents are then stale).
  void reshape(int64_t channels, int64_t height, int64_t width, int64_t block);
  int64_t channels() const { return c_; }
  int64_t height() const { return h_; }
  int64_t width() const { return w_; }
  int64_t block() const { return block_; }
  int64_t n_blocks() const { return (c_ + block_ - 1) / block_; }
  int64_t n_floats() const { return n_blocks() * block_ * h_ * w_; }  // padding lanes included
  size_t capacity_bytes() const { return buf_.size(); }
  float* data() { return buf_.as<float>(); }
  const float* data() const { return buf_.as<float>(); }

  // Plain [C, H, W] <-> this layout.
  void from_plain(const float* chw, int64_t channels, int64_t height, int64_t width, int64_t block);
  void to_plain(float* chw) const;
  // [H W, C] rows (pixel-major, the attention layout) out of this layout; and this += rows^T.
  void to_rows(float* rows) const;
  void add_rows(const float* rows);
  // This layout copied into `out` with another block.
  void reblock(int64_t block, FeatureMap& out) const;

 private:
  int64_t c_ = 0, h_ = 0, w_ = 0, block_ = 1;
  AlignedBuffer buf_;
};

// The block of the channel-blocked layout convolutions use on this CPU: 16 on AVX-512, 8 on AVX2 (the layouts of
// oneDNN's direct and Winograd kernels), 1 (plain) under FLUX_CPU=scalar. oneDNN's own choice (format `any`) on
// Zen 4 is channels-last for its brgconv kernels, which FeatureMap cannot hold: the plain fallback that gave ran
// its GEMM-based kernel at 0.67x of a blocked bf16 convolution.
int64_t conv_preferred_block();

// Whether bf16-mode Conv2ds made from now on may use Winograd (on by default; off for benchmark baselines and
// tests of the direct kernel).
void set_conv_winograd(bool on);
// Whether a Conv2d of these dimensions asked for `compute` runs as Winograd (made now): its transformed weight
// takes 16 bytes per weight element (f32, 6x6 per 3x3 kernel), made by Conv2d::prepare or the first forward.
bool conv_winograd_applies(int64_t out_channels, int64_t in_channels, int64_t kernel, int64_t stride, DType compute);

enum class ConvMode {
  cached,    // weights reordered once, primitives per input shape, activations in the primitive's layout
  per_call,  // the old path: conv2d() on plain layouts (primitive, weight and image reorders every call)
};

// y = conv(x, W) + b on FeatureMaps. Thread-safe for concurrent forward calls with distinct outputs.
class Conv2d {
 public:
  Conv2d();
  // weight: [out, in, k, k] f32/bf16/f16 (kept as given, e.g. a view of an mmap'd file); bias: F32 [out] or
  // undefined. compute: f32, or bf16 (activations rounded to bf16, f32 accumulation; needs AVX512_BF16,
  // else f32 is used). The bf16 mode is the fast one, not a promise of rounding: on AVX-512 its 3x3 stride-1
  // convolutions with channels in multiples of 16 run as oneDNN's f32 Winograd F(4x4, 3x3), 1.3-1.5x the bf16
  // direct kernel's speed on Zen 4 (bench_vae) and closer to f32 (rms rel 1e-6 against 2e-3). Padding as in
  // Conv2dParams (height/width there are ignored).
  Conv2d(Tensor weight, Tensor bias, const Conv2dParams& padding, DType compute = DType::f32,
         ConvMode mode = ConvMode::cached);
  ~Conv2d();
  Conv2d(Conv2d&&) noexcept;
  Conv2d& operator=(Conv2d&&) noexcept;

  bool defined() const { return impl_ != nullptr; }
  int64_t in_channels() const;
  int64_t out_channels() const;
  DType compute_dtype() const;  // what the product runs in (f32 where bf16 was asked but cannot run)
  // x: [in, H, W] in any block -> y: [out, H', W'] in the block the primitive chose (1 in per_call mode or
  // under FLUX_CPU=scalar). y is reshaped (its buffer reused when large enough); y must not alias x.
  void forward(const FeatureMap& x, FeatureMap& y) const;
  // Makes the Winograd weight now (where conv_winograd_applies) instead of at the first forward: the decoder's
  // are made at load, so a job's first decode does not pay the transforms (about 2.5 s for FLUX's decoder).
  void prepare() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether bf16 convolutions can run here (AVX512_BF16 and oneDNN makes a bf16 convolution).
bool conv_bf16_supported();

// Group normalisation of a FeatureMap's layout, optionally followed by SiLU, in one pass per row of pixels:
// x, y: `channels` channels of `spatial` pixels in nChw{block}c (block 1 = plain [C, HW]); y may be x. Channels
// split into `groups` groups of consecutive channels, each normalised over its values (statistics in double),
// then gamma/beta per channel (null = none), then y = y sigmoid(y) if silu. Padding lanes of y are zero.
void group_norm_blocked(const float* x, float* y, int64_t channels, int64_t spatial, int64_t block, int64_t groups,
                        const float* gamma, const float* beta, float eps, bool silu);
// Nearest-neighbour 2x upsampling in nChw{block}c: x [C, H, W] -> y [C, 2H, 2W].
void upsample_nearest2x_blocked(const float* x, float* y, int64_t channels, int64_t height, int64_t width,
                                int64_t block);

namespace reference {
void group_norm_blocked(const float* x, float* y, int64_t channels, int64_t spatial, int64_t block, int64_t groups,
                        const float* gamma, const float* beta, float eps, bool silu);
}  // namespace reference

}  // namespace flux::kernels
