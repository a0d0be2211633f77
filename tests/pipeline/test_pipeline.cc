// Pipeline::load / run on make-test-model output (both layouts, both variants), discovery errors (missing and
// inconsistent components), request validation, progress events, previews and cancellation.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/autoencoder.h"
#include "pipeline/model_discovery.h"
#include "pipeline/pipeline.h"
#include "pipeline/preview.h"
#include "pipeline/sampling.h"
#include "pipeline/test_model.h"
#include "test_util.h"

namespace flux {
namespace {

using test::error_of;

namespace fs = std::filesystem;

// One tiny model set per (variant, layout), made once per process.
const std::string& model_dir(Variant v, TestModelLayout layout, TestModelSize size = TestModelSize::tiny) {
  static std::map<std::tuple<Variant, TestModelLayout, TestModelSize>, std::string> dirs;
  auto& d = dirs[{v, layout, size}];
  if (d.empty()) {
    d = test::temp_dir("pipeline-model");
    TestModelOptions o;
    o.variant = v;
    o.layout = layout;
    o.size = size;
    o.tokenizers = test::tokenizer_dir();
    o.seed = 7;
    make_test_model(d, o);
  }
  return d;
}

ModelPaths dir_paths(const std::string& dir) {
  ModelPaths p;
  p.model_dir = dir;
  return p;
}

ModelPaths single_file_paths(const std::string& dir, Variant v) {
  ModelPaths p;
  p.diffusion_model = dir + (v == Variant::dev ? "/flux1-dev.safetensors" : "/flux1-schnell.safetensors");
  p.vae = dir + "/ae.safetensors";
  p.clip_l = dir + "/clip_l.safetensors";
  p.t5xxl = dir + "/t5xxl.safetensors";
  p.tokenizers = dir;
  return p;
}

GenerateRequest small_request(int steps = 2) {
  GenerateRequest r;
  r.prompt = "a red cube on a table";
  r.width = 64;
  r.height = 48;
  r.steps = steps;
  r.seed = 11;
  return r;
}

TEST(Pipeline, TestModelsLoadAndGenerateInBothLayouts) {
  for (Variant v : {Variant::schnell, Variant::dev}) {
    SCOPED_TRACE(variant_name(v));
    // Diffusers folder (sharded transformer) and BFL single files made from the same seed must agree exactly:
    // this checks the q/k/v split and the swapped norm_out halves of the diffusers mapping.
    uint64_t total = 0, last = 0;
    std::vector<std::string> components;
    auto diffusers = Pipeline::load(dir_paths(model_dir(v, TestModelLayout::diffusers)), {},
                                    [&](const std::string& c, uint64_t done, uint64_t all) {
                                      EXPECT_GE(done, last);
                                      last = done;
                                      total = all;
                                      if (components.empty() || components.back() != c) components.push_back(c);
                                    });
    EXPECT_EQ(last, total);
    uint64_t on_disk = 0;
    for (const auto& e : fs::recursive_directory_iterator(model_dir(v, TestModelLayout::diffusers)))
      if (e.path().extension() == ".safetensors") on_disk += fs::file_size(e.path());
    EXPECT_EQ(total, on_disk);
    EXPECT_EQ(components, (std::vector<std::string>{"t5", "clip", "transformer", "vae", "done"}));
    // Low-memory mode reports the same bytes, component by component, without a read pass.
    LoadOptions low_memory;
    low_memory.low_memory = true;
    uint64_t lm_done = 0, lm_total = 0;
    int lm_reports = 0;
    auto single = Pipeline::load(single_file_paths(model_dir(v, TestModelLayout::single_file), v), low_memory,
                                 [&](const std::string&, uint64_t done, uint64_t all) {
                                   EXPECT_GE(done, lm_done);
                                   lm_done = done;
                                   lm_total = all;
                                   ++lm_reports;
                                 });
    EXPECT_EQ(lm_done, lm_total);
    EXPECT_EQ(lm_reports, 9);  // begin + end of 4 components, then "done"
    EXPECT_EQ(diffusers->variant(), v);
    EXPECT_EQ(single->variant(), v);
    EXPECT_NE(diffusers->describe().find(variant_name(v)), std::string::npos);

    const GenerateRequest r = small_request();
    std::vector<ProgressEvent> events;
    const GenerateResult a = diffusers->run(r, [&](const ProgressEvent& e) { events.push_back(e); }, {});
    const GenerateResult b = single->run(r, {}, {});
    ASSERT_EQ(a.image.width, 64);
    ASSERT_EQ(a.image.height, 48);
    ASSERT_EQ(a.image.pixels.size(), 64u * 48 * 3);
    EXPECT_EQ(a.image.pixels, b.image.pixels);
    EXPECT_EQ(a.steps, 2);
    // A random model still produces a picture that is not constant.
    EXPECT_NE(*std::min_element(a.image.pixels.begin(), a.image.pixels.end()),
              *std::max_element(a.image.pixels.begin(), a.image.pixels.end()));
    // Events: encode_text, denoise 0..2, decode; elapsed never decreases.
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[0].stage, Stage::encode_text);
    for (int k = 0; k <= 2; ++k) {
      EXPECT_EQ(events[1 + k].stage, Stage::denoise);
      EXPECT_EQ(events[1 + k].step, k);
      EXPECT_EQ(events[1 + k].total, 2);
    }
    EXPECT_EQ(events[4].stage, Stage::decode);
    for (size_t i = 1; i < events.size(); ++i) EXPECT_GE(events[i].elapsed_s, events[i - 1].elapsed_s);
    // Same seed, same image (also through the prompt cache); another seed, another image.
    EXPECT_EQ(diffusers->run(r, {}, {}).image.pixels, a.image.pixels);
    GenerateRequest r2 = r;
    r2.seed = 12;
    EXPECT_NE(diffusers->run(r2, {}, {}).image.pixels, a.image.pixels);
  }
}

TEST(Pipeline, NoiseOverridesSeedAndDefaultSteps) {
  auto p = Pipeline::load(dir_paths(model_dir(Variant::schnell, TestModelLayout::diffusers)), {});
  GenerateRequest r = small_request(0);
  r.noise = get_noise(r.height, r.width, 99).reshape(Shape{1, 16, 6, 8});
  int last_total = 0;
  const GenerateResult a = p->run(r, [&](const ProgressEvent& e) { last_total = e.total; }, {});
  EXPECT_EQ(a.steps, 4);  // schnell default
  EXPECT_EQ(last_total, 4);
  GenerateRequest s = small_request(0);
  s.seed = 99;
  EXPECT_EQ(p->run(s, {}, {}).image.pixels, a.image.pixels);
}

TEST(Pipeline, PreviewAndCancel) {
  auto p = Pipeline::load(dir_paths(model_dir(Variant::schnell, TestModelLayout::diffusers)), {});
  GenerateRequest r = small_request(3);
  r.preview = true;
  int previews = 0;
  p->run(r,
         [&](const ProgressEvent& e) {
           if (e.stage == Stage::denoise && e.step > 0) {
             ASSERT_TRUE(e.preview.has_value());
             // latent 6x8 upscaled by 8 (longer side <= 256)
             EXPECT_EQ(e.preview->width, 64);
             EXPECT_EQ(e.preview->height, 48);
             EXPECT_EQ(e.preview->pixels.size(), 64u * 48 * 3);
             ++previews;
           }
         },
         {});
  EXPECT_EQ(previews, 3);

  std::stop_source stop;
  int steps_seen = 0;
  EXPECT_THROW(p->run(
                   small_request(4),
                   [&](const ProgressEvent& e) {
                     if (e.stage == Stage::denoise && e.step == 1) stop.request_stop();
                     steps_seen = std::max(steps_seen, e.step);
                   },
                   stop.get_token()),
               Cancelled);
  EXPECT_EQ(steps_seen, 1);
}

// The preview map fitted against a decoder that is exactly affine per latent pixel recovers that map.
TEST(Pipeline, PreviewFitRecoversAffineDecoder) {
  LatentPreview want;
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < 16; ++k) want.weight[c][k] = 0.05f * float((c * 7 + k * 3) % 11 - 5);
    want.bias[c] = 0.1f * float(c - 1);
  }
  auto decode = [&](const Tensor& z) {
    const int64_t h = z.dim(1), w = z.dim(2);
    Tensor img = Tensor::empty(DType::f32, Shape{3, h * 8, w * 8});
    for (int c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h * 8; ++y)
        for (int64_t x = 0; x < w * 8; ++x) {
          float v = want.bias[c];
          for (int k = 0; k < 16; ++k) v += want.weight[c][k] * z.data<float>()[(k * h + y / 8) * w + x / 8];
          img.mut<float>()[(c * h * 8 + y) * w * 8 + x] = v;
        }
    return img;
  };
  const LatentPreview got = LatentPreview::fit(decode);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(got.bias[c], want.bias[c], 1e-3);
    for (int k = 0; k < 16; ++k) EXPECT_NEAR(got.weight[c][k], want.weight[c][k], 1e-3);
  }
}

TEST(Pipeline, ValidateNamesTheField) {
  auto p = Pipeline::load(dir_paths(model_dir(Variant::schnell, TestModelLayout::diffusers)), {});
  GenerateRequest r = small_request();
  r.width = 100;
  EXPECT_NE(
      error_of([&] { p->validate(r); }).find("width: expected a multiple of 16, got 100 (nearest valid: 96 or 112)"),
      std::string::npos);
  r = small_request();
  r.height = 8;
  EXPECT_NE(error_of([&] { p->validate(r); }).find("height"), std::string::npos);
  r = small_request();
  r.steps = -1;
  EXPECT_NE(error_of([&] { p->validate(r); }).find("steps"), std::string::npos);
  r = small_request();
  r.noise = Tensor::zeros(DType::f32, Shape{1, 16, 8, 8});
  EXPECT_NE(error_of([&] { p->run(r, {}, {}); }).find("noise: expected [1, 16, 6, 8]"), std::string::npos);
  r = small_request();
  r.guidance = NAN;
  EXPECT_NE(error_of([&] { p->validate(r); }).find("guidance"), std::string::npos);
}

void copy_tree(const std::string& from, const std::string& to) {
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

TEST(Pipeline, DiscoveryErrors) {
  const std::string good = model_dir(Variant::schnell, TestModelLayout::diffusers);
  // Missing components, all named at once.
  {
    const std::string d = test::temp_dir("missing");
    copy_tree(good, d);
    fs::remove_all(d + "/vae");
    fs::remove_all(d + "/text_encoder_2");
    const std::string e = error_of([&] { Pipeline::load(dir_paths(d), {}); });
    EXPECT_NE(e.find("missing autoencoder (--vae FILE or vae/)"), std::string::npos) << e;
    EXPECT_NE(e.find("T5-XXL text encoder"), std::string::npos) << e;
    // A single file fills the gap.
    ModelPaths p = dir_paths(d);
    p.vae = model_dir(Variant::schnell, TestModelLayout::single_file) + "/ae.safetensors";
    p.t5xxl = model_dir(Variant::schnell, TestModelLayout::single_file) + "/t5xxl.safetensors";
    EXPECT_NO_THROW(Pipeline::load(p, {}));
  }
  EXPECT_NE(error_of([&] { Pipeline::load(dir_paths("/nonexistent/flux"), {}); }).find("--model: not a folder"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Pipeline::load(dir_paths(test::temp_dir("empty")), {}); }).find("neither a diffusers"),
            std::string::npos);
  {
    ModelPaths p = single_file_paths(model_dir(Variant::schnell, TestModelLayout::single_file), Variant::schnell);
    p.vae = "/nonexistent/ae.safetensors";
    EXPECT_NE(
        error_of([&] { Pipeline::load(p, {}); }).find("--vae: no such file or folder: /nonexistent/ae.safetensors"),
        std::string::npos);
    p = single_file_paths(model_dir(Variant::schnell, TestModelLayout::single_file), Variant::schnell);
    p.tokenizers.clear();
    EXPECT_NE(error_of([&] { Pipeline::load(p, {}); }).find("tokenizers"), std::string::npos);
  }
  // Inconsistent widths: text encoders of the "small" size against a "tiny" transformer.
  const std::string small = model_dir(Variant::schnell, TestModelLayout::single_file, TestModelSize::small);
  {
    ModelPaths p = single_file_paths(model_dir(Variant::schnell, TestModelLayout::single_file), Variant::schnell);
    p.t5xxl = small + "/t5xxl.safetensors";
    const std::string e = error_of([&] { Pipeline::load(p, {}); });
    EXPECT_NE(e.find("T5 d_model 64"), std::string::npos) << e;
    EXPECT_NE(e.find("context_in_dim 32"), std::string::npos) << e;
  }
  {
    ModelPaths p = single_file_paths(model_dir(Variant::schnell, TestModelLayout::single_file), Variant::schnell);
    p.clip_l = small + "/clip_l.safetensors";
    const std::string e = error_of([&] { Pipeline::load(p, {}); });
    EXPECT_NE(e.find("CLIP hidden_size 64"), std::string::npos) << e;
    EXPECT_NE(e.find("vec_in_dim 32"), std::string::npos) << e;
  }
  {
    const std::string d = test::temp_dir("zch");
    copy_tree(good, d);
    std::ifstream in(d + "/vae/config.json");
    nlohmann::json cfg = nlohmann::json::parse(in);
    in.close();
    cfg["latent_channels"] = 8;
    std::ofstream(d + "/vae/config.json") << cfg.dump();
    const std::string e = error_of([&] { Pipeline::load(dir_paths(d), {}); });
    EXPECT_NE(e.find("z_channels 8"), std::string::npos) << e;
  }
}

TEST(Pipeline, DiscoverySingleFileFolderAndOverrides) {
  const std::string d = model_dir(Variant::dev, TestModelLayout::single_file);
  const ModelFiles f = discover_model_files(dir_paths(d));
  EXPECT_EQ(f.transformer.weights, d + "/flux1-dev.safetensors");
  EXPECT_EQ(f.vae.weights, d + "/ae.safetensors");
  EXPECT_EQ(f.tokenizers, d);
  ModelPaths p = dir_paths(model_dir(Variant::schnell, TestModelLayout::diffusers));
  p.diffusion_model = d + "/flux1-dev.safetensors";
  const ModelFiles g = discover_model_files(p);
  EXPECT_EQ(g.transformer.weights, p.diffusion_model);
  EXPECT_EQ(g.transformer.origin, "--diffusion-model");
  EXPECT_TRUE(g.transformer.config.empty());
  EXPECT_EQ(g.vae.weights, p.model_dir + "/vae");
  EXPECT_EQ(g.vae.config, p.model_dir + "/vae/config.json");
}

}  // namespace
}  // namespace flux

namespace flux {
namespace {

// On the golden autoencoder, the fitted preview of a sampled latent resembles its real decode: the preview's
// pixels correlate with the decoded image's 8x8 block means.
TEST(Pipeline, PreviewResemblesDecode) {
  WeightStore store = WeightStore::open(test::golden_dir() + "/weights/ae.safetensors");
  const AutoEncoder ae = AutoEncoder::load(store, AutoEncoderParams::resolve(store, ""));
  const LatentPreview preview = LatentPreview::fit([&](const Tensor& z) { return ae.decode(z); });
  const SafetensorsFile f = SafetensorsFile::open(test::golden_dir() + "/e2e_schnell_48x80.safetensors");
  const Tensor z = f.tensor("latent_unpacked").reshape(Shape{16, 6, 10});
  const Image img = preview.render(z, 80);  // scale 8: 80x48
  ASSERT_EQ(img.width, 80);
  ASSERT_EQ(img.height, 48);
  const Tensor want = f.tensor("image_u8");  // [48, 80, 3]
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  const int64_t n = 6 * 10 * 3;
  for (int64_t by = 0; by < 6; ++by)
    for (int64_t bx = 0; bx < 10; ++bx)
      for (int c = 0; c < 3; ++c) {
        double mean = 0;
        for (int dy = 0; dy < 8; ++dy)
          for (int dx = 0; dx < 8; ++dx) mean += want.data<uint8_t>()[((by * 8 + dy) * 80 + bx * 8 + dx) * 3 + c];
        mean /= 64;
        const double p = img.pixels[static_cast<size_t>(((by * 8) * 80 + bx * 8) * 3 + c)];
        sa += p, sb += mean, saa += p * p, sbb += mean * mean, sab += p * mean;
      }
  const double cov = sab / n - sa / n * sb / n, va = saa / n - sa / n * sa / n, vb = sbb / n - sb / n * sb / n;
  const double corr = cov / std::sqrt(va * vb);
  std::printf("[ preview  ] correlation with the decoded 8x8 block means: %.3f\n", corr);
  EXPECT_GT(corr, 0.4);  // 0.61 measured; a wrong channel or pixel mapping gives ~0
}

}  // namespace
}  // namespace flux
