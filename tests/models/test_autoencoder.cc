// The FLUX autoencoder against the reference (golden/vae.safetensors): decode (float image and the BFL uint8
// conversion), encode (moments and z), from ae.safetensors and from the diffusers vae/ folder.
#include <cstdint>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/autoencoder.h"
#include "test_util.h"

namespace flux {
namespace {

struct Source {
  std::string weights, config;
};
const Source kBfl{"/weights/ae.safetensors", ""};
const Source kDiffusers{"/models/FLUX.1-schnell/vae", "/models/FLUX.1-schnell/vae/config.json"};

AutoEncoder load_ae(const Source& s) {
  WeightStore store = WeightStore::open(test::golden_dir() + s.weights);
  const AutoEncoderParams p = AutoEncoderParams::resolve(store, s.config.empty() ? "" : test::golden_dir() + s.config);
  return AutoEncoder::load(store, p);
}

const SafetensorsFile& golden() {
  static const SafetensorsFile g = SafetensorsFile::open(test::golden_dir() + "/vae.safetensors");
  return g;
}

// BFL save_image: clamp(-1, 1), 127.5 (x + 1), truncation; [3, H, W] -> [H, W, 3]
std::vector<uint8_t> to_u8(const Tensor& image) {
  const int64_t h = image.dim(-2), w = image.dim(-1);
  std::vector<uint8_t> out(static_cast<size_t>(h * w * 3));
  const float* x = image.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < h * w; ++i) {
      const float v = std::min(1.0f, std::max(-1.0f, x[c * h * w + i]));
      out[static_cast<size_t>(i * 3 + c)] = static_cast<uint8_t>(127.5f * (v + 1.0f));
    }
  }
  return out;
}

void check_decode(const AutoEncoder& ae, const std::string& name) {
  const Tensor image = ae.decode(golden().tensor(name + ".z"));
  const Tensor want = golden().tensor(name + ".image");
  ASSERT_EQ(image.numel(), want.numel());
  EXPECT_EQ(image.dim(0), 3);
  const test::Diff d = test::compare(image, want);
  EXPECT_LE(d.max_rel, 1e-4) << name;
  const std::vector<uint8_t> u8 = to_u8(image);
  const Tensor want_u8 = golden().tensor(name + ".image_u8");
  ASSERT_EQ(static_cast<int64_t>(u8.size()), want_u8.numel());
  int64_t n_diff = 0, max_diff = 0;
  for (size_t i = 0; i < u8.size(); ++i) {
    const int64_t diff = std::abs(int64_t{u8[i]} - int64_t{want_u8.data<uint8_t>()[i]});
    n_diff += diff != 0;
    max_diff = std::max(max_diff, diff);
  }
  std::printf("[ vae %s ] max_rel %.3g rms_rel %.3g, u8: %lld of %zu values differ (max %lld)\n", name.c_str(),
              d.max_rel, d.rms_rel, static_cast<long long>(n_diff), u8.size(), static_cast<long long>(max_diff));
  EXPECT_LE(max_diff, 1);
  EXPECT_LE(n_diff * 100, static_cast<int64_t>(u8.size()));
}

void check_encode(const AutoEncoder& ae, const std::string& name) {
  ASSERT_TRUE(ae.has_encoder());
  const Tensor x = golden().tensor(name + ".x");
  const test::Diff dm = test::compare(ae.encode_moments(x), golden().tensor(name + ".moments"));
  const test::Diff dz = test::compare(ae.encode(x), golden().tensor(name + ".z"));
  std::printf("[ vae %s ] moments max_rel %.3g, z max_rel %.3g\n", name.c_str(), dm.max_rel, dz.max_rel);
  EXPECT_LE(dm.max_rel, 1e-4) << name;
  EXPECT_LE(dz.max_rel, 1e-4) << name;
}

TEST(AutoEncoder, ResolvesParams) {
  for (const Source& s : {kBfl, kDiffusers}) {
    WeightStore store = WeightStore::open(test::golden_dir() + s.weights);
    const AutoEncoderParams p =
        AutoEncoderParams::resolve(store, s.config.empty() ? "" : test::golden_dir() + s.config);
    EXPECT_EQ(p.ch, 32) << s.weights;
    EXPECT_EQ(p.ch_mult, (std::vector<int64_t>{1, 2, 2, 2}));
    EXPECT_EQ(p.num_res_blocks, 1);
    EXPECT_EQ(p.z_channels, 16);
    EXPECT_EQ(p.in_channels, 3);
    EXPECT_EQ(p.out_ch, 3);
    EXPECT_FLOAT_EQ(p.scale_factor, 0.3611f);
    EXPECT_FLOAT_EQ(p.shift_factor, 0.1159f);
  }
}

TEST(AutoEncoder, DecodeMatchesReferenceBfl) {
  const AutoEncoder ae = load_ae(kBfl);
  check_decode(ae, "decode_64x64");
  check_decode(ae, "decode_48x80");
}

TEST(AutoEncoder, DecodeMatchesReferenceDiffusers) {
  const AutoEncoder ae = load_ae(kDiffusers);
  check_decode(ae, "decode_64x64");
  check_decode(ae, "decode_48x80");
}

TEST(AutoEncoder, EncodeMatchesReferenceBfl) {
  const AutoEncoder ae = load_ae(kBfl);
  check_encode(ae, "encode_64x64");
  check_encode(ae, "encode_48x80");
}

TEST(AutoEncoder, EncodeMatchesReferenceDiffusers) {
  const AutoEncoder ae = load_ae(kDiffusers);
  check_encode(ae, "encode_64x64");
  check_encode(ae, "encode_48x80");
}

TEST(AutoEncoder, DecoderOnlyFileHasNoEncoder) {
  const SafetensorsFile f = SafetensorsFile::open(test::golden_dir() + kBfl.weights);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const SafetensorsEntry& e : f.entries()) {
    if (e.name.rfind("decoder.", 0) == 0) tensors.emplace_back(e.name, f.tensor(e));
  }
  const std::string path = test::temp_dir("ae") + "/decoder.safetensors";
  write_safetensors(path, tensors);
  WeightStore store = WeightStore::open(path);
  const AutoEncoder ae = AutoEncoder::load(store, AutoEncoderParams::resolve(store, ""));
  EXPECT_FALSE(ae.has_encoder());
  EXPECT_THROW(ae.encode(golden().tensor("encode_64x64.x")), Error);
  EXPECT_LE(test::compare(ae.decode(golden().tensor("decode_64x64.z")), golden().tensor("decode_64x64.image")).max_rel,
            1e-4);
}

TEST(AutoEncoder, MissingTensorIsNamed) {
  const SafetensorsFile f =
      SafetensorsFile::open(test::golden_dir() + kDiffusers.weights + "/diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const SafetensorsEntry& e : f.entries()) {
    if (e.name != "decoder.up_blocks.3.resnets.0.conv_shortcut.weight") tensors.emplace_back(e.name, f.tensor(e));
  }
  const std::string path = test::temp_dir("ae") + "/broken.safetensors";
  write_safetensors(path, tensors);
  WeightStore store = WeightStore::open(path);
  try {
    AutoEncoder::load(store, AutoEncoderParams::resolve(store, ""));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.up_blocks.3.resnets.0.conv_shortcut.weight"), std::string::npos)
        << e.what();
  }
}

TEST(AutoEncoder, RejectsBadShapes) {
  const AutoEncoder ae = load_ae(kBfl);
  EXPECT_THROW(ae.decode(Tensor::zeros(DType::f32, {4, 8, 8})), Error);
  EXPECT_THROW(ae.encode(Tensor::zeros(DType::f32, {3, 60, 64})), Error);
}

}  // namespace
}  // namespace flux
