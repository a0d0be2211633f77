// 2-D convolution and nearest-neighbour upsampling on one image, F32, channels-first.
#pragma once

#include <cstdint>

namespace flux::kernels {

struct Conv2dParams {
  int64_t in_channels = 0, out_channels = 0;
  int64_t height = 0, width = 0;  // input size
  int64_t kernel = 3;             // square kernel: 1 or 3 (any odd size in the reference)
  int64_t stride = 1;
  // Zero padding per side; FLUX's VAE Downsample pads only bottom/right by 1 (pad_top = pad_left = 0).
  int64_t pad_top = 1, pad_bottom = 1, pad_left = 1, pad_right = 1;

  int64_t out_height() const { return (height + pad_top + pad_bottom - kernel) / stride + 1; }
  int64_t out_width() const { return (width + pad_left + pad_right - kernel) / stride + 1; }
};

// x: [in_channels, height, width]; w: [out_channels, in_channels, kernel, kernel]; bias: [out_channels] or
// null; y: [out_channels, out_height, out_width].
void conv2d(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);

// x: [channels, height, width] -> y: [channels, 2 height, 2 width], each pixel repeated 2x2.
void upsample_nearest2x(const float* x, float* y, int64_t channels, int64_t height, int64_t width);

namespace reference {
void conv2d(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void upsample_nearest2x(const float* x, float* y, int64_t channels, int64_t height, int64_t width);
}  // namespace reference

}  // namespace flux::kernels
