// Image-to-image against shared/golden/img2img/ (diffusers' FluxImg2ImgPipeline algorithm on BFL's components):
// the strength -> t_start rule in double arithmetic, the sampler pieces (init_x, VAE-encoded image_latents,
// trimmed schedule, initial_latent, every step's latent, the decoded image and uint8), the whole path from the
// prompt through Pipeline::run, and strength 1.0 equal to text-to-image.
#include <cmath>
#include <cstdio>
#include <string>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/autoencoder.h"
#include "models/flux.h"
#include "pipeline/img2img.h"
#include "pipeline/pipeline.h"
#include "pipeline/sampling.h"
#include "test_util.h"

namespace flux {
namespace {

struct Case {
  const char* name;
  bool dev;
  int steps;
  double strength;  // the exact double of cases.json (the file stores a float32)
  int t_start;      // README table
};
const Case kCases[] = {{"img2img_schnell_s0.3", false, 4, 0.3, 2},
                       {"img2img_schnell_s0.6", false, 4, 0.6, 1},
                       {"img2img_schnell_s1.0", false, 4, 1.0, 0},
                       {"img2img_dev_s0.6", true, 6, 0.6, 2},
                       {"img2img_dev_s1.0", true, 6, 1.0, 0}};
constexpr double kTol = 1e-4;
const char* const kPrompt = "a photo of a cat";  // prompt 0, seed 1 (README "Init image")

SafetensorsFile open_case(const Case& c) {
  return SafetensorsFile::open(test::golden_dir() + "/img2img/" + c.name + ".safetensors");
}

Image image_of_u8(const Tensor& hwc) {  // U8 [H, W, 3]
  Image img;
  img.height = static_cast<int>(hwc.dim(0));
  img.width = static_cast<int>(hwc.dim(1));
  img.pixels.assign(hwc.data<uint8_t>(), hwc.data<uint8_t>() + hwc.numel());
  return img;
}

int64_t scalar_i64(const Tensor& t) { return t.data<int64_t>()[0]; }

using test::expect_u8;

TEST(Img2Img, StrengthToStartStepInDouble) {
  struct Row {
    int steps;
    double strength;
    int t_start;
  };
  // Python: t_start = int(max(N - min(N * s, N), 0)). 6 * 0.6 = 3.5999999999999996 -> 2.4000000000000004 -> 2.
  // Float32 arithmetic would give 9 / 17 / 19 for N = 25 / 45 / 50 at s = 0.6 (25 * 0.6f = 15.000000596...),
  // rounding instead of truncating would give 2 for N = 4, s = 0.6 and 1 for N = 3, s = 0.7.
  const Row rows[] = {{4, 0.6, 1}, {4, 0.3, 2},    {4, 1.0, 0},   {4, 0.1, 3},   {4, 0.01, 3},  {6, 0.6, 2},
                      {6, 0.7, 1}, {6, 1.0, 0},    {25, 0.6, 10}, {45, 0.6, 18}, {50, 0.6, 20}, {45, 0.7, 13},
                      {3, 0.7, 0}, {28, 0.01, 27}, {1, 0.6, 0},   {28, 0.3, 19}, {10, 0.1, 9}};
  for (const Row& r : rows) {
    EXPECT_EQ(img2img_t_start(r.steps, r.strength), r.t_start) << "steps " << r.steps << " strength " << r.strength;
  }
  // No step would run, or strength out of range: errors naming strength and steps.
  for (const auto& [steps, strength] : std::vector<std::pair<int, double>>{{4, 0.0}, {1, 0.0}, {50, 1e-300}}) {
    try {
      img2img_t_start(steps, strength);
      ADD_FAILURE() << "accepted steps " << steps << " strength " << strength;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("strength"), std::string::npos) << m;
      EXPECT_NE(m.find(str_cat(steps, " steps")), std::string::npos) << m;
    }
  }
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    EXPECT_THROW(img2img_t_start(4, bad), Error) << bad;
  }
}

TEST(Img2Img, TrimAndMix) {
  const std::vector<float> full = {1.0f, 0.75f, 0.5f, 0.25f, 0.0f};
  EXPECT_EQ(trim_schedule(full, 1), (std::vector<float>{0.75f, 0.5f, 0.25f, 0.0f}));
  EXPECT_EQ(trim_schedule(full, 0), full);
  EXPECT_THROW(trim_schedule(full, 4), Error);  // no step left
  const Tensor n = Tensor::from_f32(Shape{2, 2}, std::vector<float>{1, 2, 3, 4});
  const Tensor x = Tensor::from_f32(Shape{2, 2}, std::vector<float>{-1, 0, 5, 8});
  const Tensor m = mix_noise(n, x, 0.25f);
  const std::vector<float> want = {0.25f - 0.75f, 0.5f, 0.75f + 3.75f, 1.0f + 6.0f};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(m.data<float>()[i], want[static_cast<size_t>(i)]) << i;
  const Tensor same = mix_noise(n, x, 1.0f);  // t0 = 1: the noise exactly
  for (int i = 0; i < 4; ++i) EXPECT_EQ(same.data<float>()[i], n.data<float>()[i]);
}

// The sampler pieces with the stored txt / vec / noise and the golden weights as BFL single files.
TEST(Img2Img, GoldenSamplerPieces) {
  const std::string wd = test::golden_dir() + "/weights/";
  WeightStore as = WeightStore::open(wd + "ae.safetensors");
  const AutoEncoder ae = AutoEncoder::load(as, AutoEncoderParams::resolve(as, ""));
  ASSERT_TRUE(ae.has_encoder());
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const SafetensorsFile f = open_case(c);
    WeightStore fs = WeightStore::open(wd + (c.dev ? "flux1-dev.safetensors" : "flux1-schnell.safetensors"));
    const Flux model = Flux::load(fs, FluxParams::resolve(fs, ""));

    // Strength -> t_start and the trimmed schedule: exact.
    EXPECT_FLOAT_EQ(f.tensor("strength").data<float>()[0], static_cast<float>(c.strength));
    EXPECT_EQ(scalar_i64(f.tensor("num_steps")), c.steps);
    const int t_start = img2img_t_start(c.steps, c.strength);
    EXPECT_EQ(t_start, scalar_i64(f.tensor("t_start")));
    EXPECT_EQ(t_start, c.t_start);
    const Image init = image_of_u8(f.tensor("init_image_u8"));
    const Tensor noise = f.tensor("noise");
    const int64_t h = noise.dim(2), w = noise.dim(3);
    const Tensor noise_packed = pack_latent(noise.reshape(Shape{16, h, w}));
    const std::vector<float> full = get_schedule(c.steps, noise_packed.dim(0), c.dev);
    const Tensor full_want = f.tensor("timesteps_full");
    ASSERT_EQ(full.size(), static_cast<size_t>(full_want.numel()));
    for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(full[i], full_want.data<float>()[i]) << "timesteps_full " << i;
    const std::vector<float> ts = trim_schedule(full, t_start);
    const Tensor ts_want = f.tensor("timesteps");
    ASSERT_EQ(ts.size(), static_cast<size_t>(ts_want.numel()));
    for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(ts[i], ts_want.data<float>()[i]) << "timesteps " << i;

    // u8 -> [-1, 1], the VAE encode (mean), packing, the mix at t0.
    EXPECT_CLOSE(image_to_tensor(init), f.tensor("init_x").reshape(Shape{3, h * 8, w * 8}), 1e-7);
    const Tensor x0 = encode_init_image(ae, init, static_cast<int>(w * 8), static_cast<int>(h * 8));
    const double lat_err = test::compare(x0, f.tensor("image_latents_packed").reshape(x0.shape())).max_rel;
    EXPECT_LE(lat_err, kTol);
    EXPECT_CLOSE(unpack_latent(x0, h, w), f.tensor("image_latents").reshape(Shape{16, h, w}), kTol);
    const Tensor x_init = mix_noise(noise_packed, x0, ts[0]);
    const double init_err = test::compare(x_init, f.tensor("initial_latent").reshape(x_init.shape())).max_rel;
    EXPECT_LE(init_err, kTol);
    if (c.strength == 1.0) {  // t0 = 1: the noise itself, bit for bit
      for (int64_t i = 0; i < x_init.numel(); ++i) ASSERT_EQ(x_init.data<float>()[i], noise_packed.data<float>()[i]);
    }

    // The Euler loop on the trimmed schedule, from the stored text embeddings.
    const Tensor txt = f.tensor("txt").reshape(Shape{f.tensor("txt").dim(1), f.tensor("txt").dim(2)});
    const Tensor y = f.tensor("vec").reshape(Shape{f.tensor("vec").dim(1)});
    const float guidance = c.dev ? f.tensor("guidance").data<float>()[0] : 3.5f;
    const Tensor img_ids = make_img_ids(h, w), txt_ids = make_txt_ids(txt.dim(0));
    const Tensor latents = f.tensor("latents");
    const int64_t s = x_init.dim(0), n_run = static_cast<int64_t>(ts.size()) - 1;
    ASSERT_EQ(latents.dim(0), n_run + 1);
    double max_latent = 0;
    int n_steps = 0;
    const Tensor out = denoise(
        [&](const Tensor& x, float t) { return model.forward(x, img_ids, txt, txt_ids, t, y, guidance); }, x_init, ts,
        [&](int k, const Tensor& x, const Tensor&, float, float) {
          ++n_steps;
          max_latent =
              std::max(max_latent, test::compare(x, latents.slice_rows(k, k + 1).reshape(Shape{s, 64})).max_rel);
        });
    EXPECT_EQ(n_steps, n_run);
    max_latent =
        std::max(max_latent, test::compare(out, latents.slice_rows(n_run, n_run + 1).reshape(Shape{s, 64})).max_rel);
    EXPECT_LE(max_latent, kTol);
    const Tensor image = ae.decode(unpack_latent(out, h, w));
    const double img_err = test::compare(image, f.tensor("image").reshape(image.shape())).max_rel;
    EXPECT_LE(img_err, kTol);
    std::printf(
        "[ img2img  ] %s: t_start %d, %lld steps; image_latents %.2e initial_latent %.2e latents %.2e image %.2e\n",
        c.name, t_start, static_cast<long long>(n_run), lat_err, init_err, max_latent, img_err);
    expect_u8(str_cat(c.name, " sampler"), image_from_tensor(image), f.tensor("image_u8"));
  }
}

ModelPaths single_files(bool dev) {
  const std::string wd = test::golden_dir() + "/weights/";
  ModelPaths paths;
  paths.diffusion_model = wd + (dev ? "flux1-dev.safetensors" : "flux1-schnell.safetensors");
  paths.vae = wd + "ae.safetensors";
  paths.clip_l = wd + "clip_l.safetensors";
  paths.t5xxl = wd + "t5xxl.safetensors";
  paths.tokenizers = test::tokenizer_dir();
  return paths;
}

// From the prompt through Pipeline::run: the stored init image and noise -> image_u8; progress counts the steps
// that run; strength 1.0 gives exactly the text-to-image image.
TEST(Img2Img, GoldenPipelineFromPrompt) {
  for (bool dev : {false, true}) {
    auto p = Pipeline::load(single_files(dev), {});
    for (const Case& c : kCases) {
      if (c.dev != dev) continue;
      SCOPED_TRACE(c.name);
      const SafetensorsFile f = open_case(c);
      GenerateRequest r;
      r.prompt = kPrompt;
      r.width = r.height = 64;
      r.steps = c.steps;
      r.guidance = 3.5f;
      r.seed = 1;
      r.noise = f.tensor("noise");
      r.init_image = std::make_shared<const Image>(image_of_u8(f.tensor("init_image_u8")));
      r.strength = c.strength;
      const int n_run = c.steps - c.t_start;
      int n_steps = 0, n_encode = 0;
      const GenerateResult res = p->run(r,
                                        [&](const ProgressEvent& e) {
                                          n_encode += e.stage == Stage::encode_image;
                                          if (e.stage != Stage::denoise) return;
                                          EXPECT_EQ(e.total, n_run);
                                          n_steps += e.step > 0;
                                        },
                                        {});
      EXPECT_EQ(n_encode, 1);
      EXPECT_EQ(n_steps, n_run);
      EXPECT_EQ(res.steps_run, n_run);
      EXPECT_EQ(res.steps, c.steps);
      EXPECT_GT(res.timings.encode_image_s, 0);
      expect_u8(str_cat(c.name, " prompt path"), res.image, f.tensor("image_u8"));
      if (c.strength == 1.0) {
        GenerateRequest t2i = r;
        t2i.init_image.reset();
        const GenerateResult plain = p->run(t2i, {}, {});
        EXPECT_EQ(plain.steps_run, c.steps);
        EXPECT_TRUE(plain.image.pixels == res.image.pixels) << "strength 1.0 differs from text-to-image";
      }
    }
  }
}

// The pipeline refuses what cannot run, naming the field, before any work.
TEST(Img2Img, PipelineValidates) {
  auto p = Pipeline::load(single_files(false), {});
  GenerateRequest r;
  r.prompt = kPrompt;
  r.width = r.height = 64;
  r.init_image = std::make_shared<const Image>(Image{32, 32, std::vector<uint8_t>(32 * 32 * 3, 100)});
  r.strength = 0.0;
  try {
    p->validate(r);
    ADD_FAILURE() << "strength 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("strength 0 with 4 steps"), std::string::npos) << e.what();
  }
  r.strength = 1.5;
  EXPECT_THROW(p->validate(r), Error);
  r.strength = 0.5;
  r.init_image = std::make_shared<const Image>(Image{32, 32, std::vector<uint8_t>(10, 100)});
  EXPECT_THROW(p->validate(r), Error);
  // Any size is fitted: a 32x48 picture for a 64x64 image runs.
  r.init_image = std::make_shared<const Image>(Image{32, 48, std::vector<uint8_t>(32 * 48 * 3, 100)});
  r.steps = 2;
  p->validate(r);
  const GenerateResult res = p->run(r, {}, {});
  EXPECT_EQ(res.image.width, 64);
  EXPECT_EQ(res.steps_run, 1);  // int(2 - 1.0) = 1 -> one step
}

}  // namespace
}  // namespace flux
