// End-to-end golden tests (shared/golden/e2e_*.safetensors): the sampler isolated from the text encoders (stored
// noise, txt and vec -> every step's latent and prediction, the unpacked latent, the decoded image, uint8), and the
// whole path from the prompt through Pipeline::run, with the weights as BFL single files and as diffusers folders.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/autoencoder.h"
#include "models/flux.h"
#include "pipeline/pipeline.h"
#include "pipeline/sampling.h"
#include "test_util.h"

namespace flux {
namespace {

struct Case {
  const char* name;
  bool dev;
  int height, width, steps;
  uint64_t seed;
  const char* prompt;
};
const Case kCases[] = {
    {"e2e_schnell_64x64", false, 64, 64, 4, 1, "a photo of a cat"},
    {"e2e_schnell_48x80", false, 48, 80, 4, 2, "an astronaut riding a horse on the moon, digital art"},
    {"e2e_dev_64x64", true, 64, 64, 6, 1, "a photo of a cat"},
    {"e2e_dev_48x80", true, 48, 80, 6, 3, "A cat holding a sign that says hello world"}};

constexpr double kTol = 5e-4;  // MANIFEST: e2e latents / images

std::string diffusers_dir(bool dev) {
  return test::golden_dir() + (dev ? "/models/FLUX.1-dev" : "/models/FLUX.1-schnell");
}

using test::compare_u8;
using test::expect_u8;
using test::U8Diff;

// The sampler with the stored txt / vec / noise, weights from one source; references from the case's file, or
// from `reference` (the quantized cases: same inputs, the transformer's weights dequantized).
void run_sampler_case(const Case& c, const std::string& flux_path, const std::string& flux_config,
                      const std::string& ae_path, const std::string& ae_config, const std::string& tag,
                      const std::string& reference = "") {
  SCOPED_TRACE(std::string(c.name) + " " + tag);
  const SafetensorsFile in = SafetensorsFile::open(test::golden_dir() + "/" + c.name + ".safetensors");
  const SafetensorsFile f = reference.empty() ? in : SafetensorsFile::open(reference);
  WeightStore fs = WeightStore::open(flux_path);
  const Flux model = Flux::load(fs, FluxParams::resolve(fs, flux_config));
  WeightStore as = WeightStore::open(ae_path);
  const AutoEncoder ae = AutoEncoder::load(as, AutoEncoderParams::resolve(as, ae_config));
  ASSERT_EQ(model.params().guidance_embed, c.dev);

  const Tensor noise = in.tensor("noise");
  const int64_t h = noise.dim(2), w = noise.dim(3);
  const Tensor txt = in.tensor("txt").reshape(Shape{in.tensor("txt").dim(1), in.tensor("txt").dim(2)});
  const Tensor y = in.tensor("vec").reshape(Shape{in.tensor("vec").dim(1)});
  const float guidance = c.dev ? in.tensor("guidance").data<float>()[0] : 3.5f;
  const Tensor latents = f.tensor("latents"), preds = f.tensor("preds");
  const int64_t s = latents.dim(1);

  const Tensor img = pack_latent(noise.reshape(Shape{16, h, w}));
  const Tensor img_ids = make_img_ids(h, w), txt_ids = make_txt_ids(txt.dim(0));
  const std::vector<float> ts = get_schedule(c.steps, s, c.dev);
  double max_latent = 0, max_pred = 0;
  VelocityFn velocity = [&](const Tensor& x, float t) {
    return model.forward(x, img_ids, txt, txt_ids, t, y, guidance);
  };
  StepFn on_step = [&](int k, const Tensor& x, const Tensor& v, float, float) {
    max_latent = std::max(max_latent, test::compare(x, latents.slice_rows(k, k + 1).reshape(Shape{s, 64})).max_rel);
    max_pred = std::max(max_pred, test::compare(v, preds.slice_rows(k, k + 1).reshape(Shape{s, 64})).max_rel);
  };
  const Tensor out = denoise(velocity, img, ts, on_step);
  max_latent = std::max(max_latent, test::compare(out, latents.slice_rows(c.steps, c.steps + 1)).max_rel);
  const Tensor unpacked = unpack_latent(out, h, w);
  const double lat_err = test::compare(unpacked, f.tensor("latent_unpacked")).max_rel;
  const Tensor image = ae.decode(unpacked);
  const double img_err = test::compare(image, f.tensor("image")).max_rel;
  std::printf("[ sampler  ] %s %s: latents %.2e preds %.2e latent_unpacked %.2e image %.2e\n", c.name, tag.c_str(),
              max_latent, max_pred, lat_err, img_err);
  EXPECT_LE(max_latent, kTol);
  EXPECT_LE(max_pred, kTol);
  EXPECT_LE(lat_err, kTol);
  EXPECT_LE(img_err, kTol);
  expect_u8((std::string(c.name) + " " + tag).c_str(), image_from_tensor(image), f.tensor("image_u8"));
}

TEST(E2E, SamplerSingleFiles) {
  const std::string wd = test::golden_dir() + "/weights/";
  for (const Case& c : kCases)
    run_sampler_case(c, wd + (c.dev ? "flux1-dev.safetensors" : "flux1-schnell.safetensors"), "", wd + "ae.safetensors",
                     "", "single files");
}

TEST(E2E, SamplerDiffusersFolders) {
  for (const Case& c : kCases) {
    const std::string d = diffusers_dir(c.dev);
    run_sampler_case(c, d + "/transformer", d + "/transformer/config.json", d + "/vae", d + "/vae/config.json",
                     "diffusers");
  }
}

// Sets an environment variable for a scope (FLUX_MATMUL_BF16 is read when each Linear is made).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

// GGUF transformers (Q8_0, city96 and sd.cpp layouts) against the reference run on their f32 dequantization
// (shared/golden/gguf/README.md, "End-to-end"). The weights stay in their Q8_0 blocks; products run in f32
// so the comparison is with f32 reference arithmetic (the bf16 product is checked by the kernel tests, and
// from the prompt below).
TEST(E2E, SamplerGgufQ8_0) {
  const ScopedEnv f32_products("FLUX_MATMUL_BF16", "0");
  const std::string g = test::golden_dir() + "/gguf/", wd = test::golden_dir() + "/weights/";
  run_sampler_case(kCases[0], g + "city96-flux1-schnell-Q8_0.gguf", "", wd + "ae.safetensors", "", "city96 Q8_0",
                   g + "e2e_schnell_64x64_q8_0.safetensors");
  run_sampler_case(kCases[0], g + "sdcpp-flux1-schnell-q8_0.gguf", "", wd + "ae.safetensors", "", "sd.cpp q8_0",
                   g + "e2e_schnell_64x64_sdcpp_q8_0.safetensors");
}

// The whole path: prompt -> tokenizers -> CLIP / T5 -> sampler -> decode, through Pipeline::run; single files
// with the stored noise, diffusers folders with the noise drawn from the case's seed.
// With stored_noise false, the noise comes from the seed (TorchGenerator, bit-exact torch.randn).
void run_pipeline_case(Pipeline& p, const Case& c, const std::string& tag, bool stored_noise) {
  const SafetensorsFile f = SafetensorsFile::open(test::golden_dir() + "/" + c.name + ".safetensors");
  GenerateRequest r;
  r.prompt = c.prompt;
  r.width = c.width;
  r.height = c.height;
  r.steps = c.steps;
  r.guidance = 3.5f;
  r.seed = c.seed;
  if (stored_noise) r.noise = f.tensor("noise");
  int n_steps = 0;
  const GenerateResult res =
      p.run(r, [&](const ProgressEvent& e) { n_steps += e.stage == Stage::denoise && e.step > 0; }, {});
  EXPECT_EQ(n_steps, c.steps);
  EXPECT_EQ(res.steps, c.steps);
  EXPECT_EQ(res.image.width, c.width);
  EXPECT_EQ(res.image.height, c.height);
  expect_u8((std::string(c.name) + " prompt path, " + tag + (stored_noise ? ", stored noise" : ", seed")).c_str(),
            res.image, f.tensor("image_u8"));
}

TEST(E2E, PipelineFromPromptSingleFiles) {
  const std::string wd = test::golden_dir() + "/weights/";
  for (bool dev : {false, true}) {
    ModelPaths paths;
    paths.diffusion_model = wd + (dev ? "flux1-dev.safetensors" : "flux1-schnell.safetensors");
    paths.vae = wd + "ae.safetensors";
    paths.clip_l = wd + "clip_l.safetensors";
    paths.t5xxl = wd + "t5xxl.safetensors";
    paths.tokenizers = test::tokenizer_dir();
    auto p = Pipeline::load(paths, {});
    EXPECT_EQ(p->variant(), dev ? Variant::dev : Variant::schnell);
    for (const Case& c : kCases)
      if (c.dev == dev) run_pipeline_case(*p, c, "single files", true);
  }
}

// `generate` as users run it on a GGUF transformer, from the prompt. With f32 products: the manifest's uint8
// rule against the reference. With bf16 products (activations rounded to bf16, where the CPU has them): no
// value off by more than 1, and the count is printed (the reference computes in f32: ~10% of values move by 1).
TEST(E2E, PipelineFromPromptGgufQ8_0) {
  const std::string g = test::golden_dir() + "/gguf/", wd = test::golden_dir() + "/weights/";
  for (const char* bf16 : {"0", "1"}) {
    const ScopedEnv products("FLUX_MATMUL_BF16", bf16);
    for (const auto& [file, reference] :
         {std::pair{"city96-flux1-schnell-Q8_0.gguf", "e2e_schnell_64x64_q8_0.safetensors"},
          std::pair{"sdcpp-flux1-schnell-q8_0.gguf", "e2e_schnell_64x64_sdcpp_q8_0.safetensors"}}) {
      SCOPED_TRACE(std::string(file) + (bf16[0] == '1' ? ", bf16 products" : ", f32 products"));
      ModelPaths paths;
      paths.diffusion_model = g + file;
      paths.vae = wd + "ae.safetensors";
      paths.clip_l = wd + "clip_l.safetensors";
      paths.t5xxl = wd + "t5xxl.safetensors";
      paths.tokenizers = test::tokenizer_dir();
      auto p = Pipeline::load(paths, {});
      EXPECT_EQ(p->variant(), Variant::schnell);
      const Case& c = kCases[0];
      const SafetensorsFile in = SafetensorsFile::open(test::golden_dir() + "/" + c.name + ".safetensors");
      GenerateRequest r;
      r.prompt = c.prompt;
      r.width = c.width;
      r.height = c.height;
      r.steps = c.steps;
      r.noise = in.tensor("noise");
      const GenerateResult res = p->run(r, {}, {});
      const Tensor want = SafetensorsFile::open(g + reference).tensor("image_u8");
      if (bf16[0] == '0') {
        expect_u8((std::string(file) + " prompt path").c_str(), res.image, want);
      } else {
        const U8Diff d = compare_u8(res.image.pixels.data(), want.data<uint8_t>(), want.numel());
        std::printf("[ u8 bf16  ] %s prompt path, bf16 products where available: %lld/%lld values differ (max %d)\n",
                    file, static_cast<long long>(d.n_diff), static_cast<long long>(d.n_total), d.max_diff);
        EXPECT_LE(d.max_diff, 1);
      }
    }
  }
}

TEST(E2E, PipelineFromPromptDiffusersFolders) {
  for (bool dev : {false, true}) {
    ModelPaths paths;
    paths.model_dir = diffusers_dir(dev);
    uint64_t last_done = 0, total = 0;
    bool monotonic = true;
    auto p = Pipeline::load(paths, {}, [&](const std::string&, uint64_t done, uint64_t all) {
      monotonic = monotonic && done >= last_done;
      last_done = done;
      total = all;
    });
    EXPECT_TRUE(monotonic);
    EXPECT_GT(total, 0u);
    EXPECT_EQ(last_done, total);
    EXPECT_EQ(p->variant(), dev ? Variant::dev : Variant::schnell);
    for (const Case& c : kCases)
      if (c.dev == dev) run_pipeline_case(*p, c, "diffusers", false);
  }
}

}  // namespace
}  // namespace flux
