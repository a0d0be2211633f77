// Tiled runs of the autoencoder's halves (models/autoencoder.h, VaeTiling): the input is cut into overlapping
// tiles on the latent grid (8 pixels a unit), each run through the network on its own, and the outputs blended
// with linear ramps across every overlap, normalised by the summed weights, so no seam shows. Group norm and the
// middle attention see one tile at a time: a tiled result is close to, not equal to, the untiled one.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/autoencoder.h"
#include "tensor/tensor.h"

namespace flux {

enum class TileScale {
  decode,  // input in latent units, output 8x larger
  encode,  // input in pixels (8 per latent unit), output in latent units
};

struct TileSpan {
  int64_t begin = 0, end = 0;  // [begin, end) in latent units
};
// Tiles along one axis of `length` units: one when tile >= length; else the fewest tiles of at most `tile`
// units overlapping by at least `overlap`, all of one size, spread evenly from 0 to length.
std::vector<TileSpan> tile_spans(int64_t length, int64_t tile, int64_t overlap);

// in: F32 [C, H, W]; fn maps an input tile to its output tile ([out_channels, ...] at the scale's size).
// tiling.tile 0, or a tile covering the whole input, calls fn(in) once.
Tensor run_tiled(const Tensor& in, TileScale scale, int64_t out_channels, const VaeTiling& tiling,
                 const std::function<Tensor(const Tensor&)>& fn);

}  // namespace flux
