// Fitting an init image (img2img) to the requested size: scale to cover, centre crop.
//
// The rule: the source is scaled by s = max(W / w, H / h), the smallest factor at which it covers the W x H
// target, and the centre W x H of the scaled picture is kept (equal amounts cut from left and right, or from
// top and bottom; nothing is cut when the aspect ratios agree). It is done in one resampling pass: the source
// window of aspect W:H centred in the picture, (W / s) x (H / s) source pixels, is resampled to W x H.
// The filter is separable bicubic (Keys, a = -0.5) whose support widens by the reduction factor when
// shrinking (antialiasing, as PIL's Image.resize with BICUBIC does); samples outside the picture repeat its
// edge. Values are rounded to the nearest 8-bit value and clamped. A picture already W x H is returned as is.
#pragma once

#include "io/image.h"

namespace flux {

// `image` (any size >= 1x1) -> exactly width x height (each >= 1) by the rule above.
Image resize_cover(const Image& image, int width, int height);

}  // namespace flux
