// Cheap latent previews. At each step the sampler's estimate of the clean latent is x0 = x - t * v (flow
// matching: x_t = (1 - t) x0 + t noise and v = noise - x0). A preview maps each latent pixel of x0 to RGB with
// one affine 16 -> 3 map and upsamples it by nearest neighbour; no autoencoder pass per step.
//
// The map is not copied from anywhere: it is fitted once, by least squares, against this model's own
// autoencoder. fit() decodes a few random N(0, 1) latents (8x8 each, i.e. 64x64 images), averages each decoded
// 8x8 pixel block, and solves min ||[z 1] A - rgb||^2 (17 unknowns per colour, a small ridge for stability).
#pragma once

#include <array>
#include <functional>

#include "io/image.h"
#include "tensor/tensor.h"

namespace flux {

class LatentPreview {
 public:
  // decode: F32 [16, h, w] sampler-space latent -> F32 [3, 8h, 8w] in [-1, 1].
  static LatentPreview fit(const std::function<Tensor(const Tensor&)>& decode, int n_latents = 4);

  // z: F32 [16, h, w] -> an RGB image of (scale*w) x (scale*h), scale = the largest integer <= 8 keeping the
  // longer side <= max_side (at least 1).
  Image render(const Tensor& z, int max_side = 256) const;
  // The fitted map: rgb[c] = sum_k weight[c][k] * z[k] + bias[c] (values in [-1, 1]).
  std::array<std::array<float, 16>, 3> weight{};
  std::array<float, 3> bias{};
};

}  // namespace flux
