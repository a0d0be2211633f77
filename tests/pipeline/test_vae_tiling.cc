// Tiled VAE decode and encode (models/autoencoder_tiling.h) against the untiled passes, on a small random VAE in
// the real layout (make-test-model's tables: 4 levels, so 8 pixels a latent unit), and the blending itself on a
// network whose tiles are exact crops of the whole.
#include <gtest/gtest.h>

#include <cmath>

#include "io/weight_store.h"
#include "models/autoencoder.h"
#include "models/autoencoder_tiling.h"
#include "pipeline/test_model_tables.h"
#include "pipeline/test_model_write.h"
#include "test_util.h"

namespace flux {
namespace {

AutoEncoder random_vae() {
  test_model::Sizes s = test_model::sizes_for(TestModelSize::tiny);
  s.ae_ch = 32;
  s.ae_mult = {1, 1, 2, 2};
  s.ae_res = 1;
  const test_model::Params params = test_model::ae_weights(s);
  const std::string path = test::temp_dir("vae-tiling") + "/ae.safetensors";
  test_model::write_safetensors_streamed(path, test_model::as_stored(params), params,
                                         *test_model::torch_values(params, 7), {}, {});
  WeightStore store = WeightStore::open(path);
  return AutoEncoder::load(store, AutoEncoderParams::resolve(store, ""));
}

const AutoEncoder& vae() {
  static const AutoEncoder ae = random_vae();
  return ae;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, float lo, float hi) {
  const auto v = test::random_floats(static_cast<size_t>(shape.numel()), seed, lo, hi);
  return Tensor::from_f32(shape, std::span<const float>(v.data(), v.size()));
}

// Mean |a - b| over the columns [x0, x1) of every row and channel of [C, H, W] images.
double mean_abs_diff(const Tensor& a, const Tensor& b, int64_t x0, int64_t x1) {
  const int64_t n = a.dim(0) * a.dim(1), w = a.dim(2);
  double s = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t x = x0; x < x1; ++x) s += std::abs(a.data<float>()[r * w + x] - b.data<float>()[r * w + x]);
  return s / static_cast<double>(n * (x1 - x0));
}

// Mean |img[x] - img[x - 1]| over the columns [x0, x1): how much the image steps from column to column.
double mean_step(const Tensor& img, int64_t x0, int64_t x1) {
  const int64_t n = img.dim(0) * img.dim(1), w = img.dim(2);
  double s = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t x = x0; x < x1; ++x) s += std::abs(img.data<float>()[r * w + x] - img.data<float>()[r * w + x - 1]);
  return s / static_cast<double>(n * (x1 - x0));
}

TEST(TileSpans, CoverEvenlyWithTheOverlap) {
  EXPECT_EQ(tile_spans(16, 64, 8).size(), 1u);
  for (auto [length, tile, overlap] : {std::tuple{128, 64, 8}, {24, 12, 4}, {16, 12, 4}, {100, 7, 3}, {9, 8, 8}}) {
    const std::vector<TileSpan> s = tile_spans(length, tile, overlap);
    ASSERT_GE(s.size(), 2u);
    EXPECT_EQ(s.front().begin, 0);
    EXPECT_EQ(s.back().end, length);
    for (size_t i = 0; i < s.size(); ++i) {
      EXPECT_LE(s[i].end - s[i].begin, tile);
      EXPECT_EQ(s[i].end - s[i].begin, s[0].end - s[0].begin);  // one size
      if (i > 0) {
        EXPECT_GE(s[i - 1].end - s[i].begin, std::min<int64_t>(overlap, tile / 2)) << length << " " << i;
      }
    }
  }
  // 1024 px at 512 px tiles and 64 px overlap: 3 tiles of 384 px per side (not 512 + 512 + a sliver).
  const std::vector<TileSpan> s = tile_spans(128, 64, 8);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].end - s[0].begin, 48);
}

TEST(VaeTiling, BlendingOfExactCropsIsExact) {
  // fn = nearest 8x upsampling times 2: every tile's output is the crop of the whole one, so the blend must give
  // the untiled result back up to rounding of the weight normalisation, seams included.
  const Tensor z = random_tensor({5, 17, 23}, 1, -1.0f, 1.0f);
  auto fn = [](const Tensor& t) {
    Tensor o = Tensor::empty(DType::f32, {t.dim(0), 8 * t.dim(1), 8 * t.dim(2)});
    for (int64_t c = 0; c < t.dim(0); ++c)
      for (int64_t y = 0; y < 8 * t.dim(1); ++y)
        for (int64_t x = 0; x < 8 * t.dim(2); ++x)
          o.mut<float>()[(c * 8 * t.dim(1) + y) * 8 * t.dim(2) + x] =
              2.0f * t.data<float>()[(c * t.dim(1) + y / 8) * t.dim(2) + x / 8];
    return o;
  };
  const Tensor whole = fn(z);
  const Tensor tiled = run_tiled(z, TileScale::decode, 5, {.tile = 64, .overlap = 24}, fn);
  EXPECT_LE(test::compare(tiled, whole).max_rel, 1e-6);
  const Tensor one = run_tiled(z, TileScale::decode, 5, {.tile = 256, .overlap = 24}, fn);  // covers it all
  EXPECT_EQ(test::compare(one, whole).max_abs, 0.0);
}

TEST(VaeTiling, TiledDecodeMatchesUntiledWithoutSeams) {
  const Tensor z = random_tensor({16, 16, 24}, 2, -2.0f, 2.0f);  // a 192x128 image
  const Tensor whole = vae().decode(z);
  EXPECT_EQ(test::compare(vae().decode(z, {.tile = 256}), whole).max_abs, 0.0) << "one tile is the untiled pass";
  // 96 px tiles, 32 px overlap: 3 x 2 tiles of 88 x 80 px; vertical seams (overlaps) at x in [56, 88), [104, 144).
  const VaeTiling tiling{.tile = 96, .overlap = 32};
  const Tensor tiled = vae().decode(z, tiling);
  ASSERT_EQ(tiled.shape(), whole.shape());
  const test::Diff d = test::compare(tiled, whole);
  const double seam_diff = mean_abs_diff(tiled, whole, 56, 88), inner_diff = mean_abs_diff(tiled, whole, 8, 48);
  const double seam_step = mean_step(tiled, 56, 88), whole_step = mean_step(whole, 56, 88);
  std::printf("[ tiled decode ] max_rel %.3g rms_rel %.3g; mean |diff| seam %.4g, interior %.4g; column step "
              "tiled %.4g vs untiled %.4g\n",
              d.max_rel, d.rms_rel, seam_diff, inner_diff, seam_step, whole_step);
  // Tiles see their own group-norm statistics and attention context, so they differ from the whole pass: on
  // this random network at tiles of 11 x 10 latent units, by 0.14 (rms, relative) when measured; the blending
  // itself is exact (BlendingOfExactCropsIsExact).
  EXPECT_LE(d.rms_rel, 0.2);
  // No seam: across the overlap the tiled image steps from column to column as the untiled one does...
  EXPECT_LE(seam_step, 1.10 * whole_step);
  // ...and differs from it there no more than elsewhere.
  EXPECT_LE(seam_diff, 2.0 * inner_diff + 1e-3);
}

TEST(VaeTiling, TiledEncodeMatchesUntiled) {
  const Tensor x = random_tensor({3, 128, 192}, 3, -1.0f, 1.0f);
  const Tensor whole = vae().encode(x);
  EXPECT_EQ(test::compare(vae().encode(x, {.tile = 256}), whole).max_abs, 0.0);
  const Tensor tiled = vae().encode(x, {.tile = 96, .overlap = 32});
  ASSERT_EQ(tiled.shape(), whole.shape());
  const test::Diff d = test::compare(tiled, whole);
  std::printf("[ tiled encode ] max_rel %.3g rms_rel %.3g\n", d.max_rel, d.rms_rel);
  // The encoder's middle attention and last group norms run at 1/8 scale, on 11 x 10 of 24 x 16 positions per
  // tile here: 0.26 measured. Unrelated images' latents differ by about 1.4.
  EXPECT_LE(d.rms_rel, 0.35);
  const Tensor other = vae().encode(random_tensor({3, 128, 192}, 4, -1.0f, 1.0f));
  EXPECT_GE(test::compare(other, whole).rms_rel, 3 * d.rms_rel) << "the tiled latent is near its own image's";
}

TEST(VaeTiling, AutomaticAboveTheActivationBudget) {
  const AutoEncoderParams p = AutoEncoderParams::flux();
  // ch 128, ch_mult[1] 2: three maps of 256 channels at full resolution.
  EXPECT_EQ(AutoEncoder::decode_activation_bytes(p, 512, 512), uint64_t{3} * 4 * 256 * 512 * 512);
  EXPECT_EQ(AutoEncoder::auto_tiling(p, 512, 512).tile, 0);
  EXPECT_EQ(AutoEncoder::auto_tiling(p, 768, 768).tile, 0);
  EXPECT_EQ(AutoEncoder::auto_tiling(p, 1024, 1024).tile, AutoEncoder::kAutoTile);
}

}  // namespace
}  // namespace flux
