// LoRA end to end (shared/golden/lora/e2e_schnell_64x64_<case>.safetensors): the sampler with the stored text
// embeddings and noise, and Pipeline::run from the prompt, with the adapters merged at load and applied at run time;
// per-request adapters leave the next request alone; the --lora-dir name rules.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/autoencoder.h"
#include "models/flux.h"
#include "models/lora_runtime.h"
#include "pipeline/lora_dir.h"
#include "pipeline/pipeline.h"
#include "pipeline/sampling.h"
#include "test_util.h"

namespace flux {
namespace {

std::string lora_dir() { return test::golden_dir() + "/lora/"; }
std::string weights_dir() { return test::golden_dir() + "/weights/"; }

struct Case {
  const char* name;
  std::vector<std::pair<const char*, float>> loras;  // file stem, strength
};
const Case kCases[] = {{"a1.0", {{"lora_a_kohya", 1.0f}}},
                       {"a1.0_b0.6", {{"lora_a_comfy", 1.0f}, {"lora_b_diffusers", 0.6f}}}};

std::vector<LoraSpec> specs_of(const Case& c) {
  std::vector<LoraSpec> s;
  for (const auto& [stem, strength] : c.loras) s.push_back({lora_dir() + stem + ".safetensors", strength});
  return s;
}

SafetensorsFile golden(const Case& c) {
  return SafetensorsFile::open(lora_dir() + "e2e_schnell_64x64_" + c.name + ".safetensors");
}

using test::expect_u8;

// The sampler with stored txt / vec / noise: every step's latent and prediction, the decoded image and uint8.
void run_sampler(const Case& c, bool merged) {
  const std::string tag = std::string(c.name) + (merged ? " merged" : " runtime");
  SCOPED_TRACE(tag);
  const SafetensorsFile f = golden(c);
  LoraStack stack;
  WeightStore fs = WeightStore::open(weights_dir() + "flux1-schnell.safetensors");
  const FluxParams params = FluxParams::resolve(fs, "");
  for (const LoraSpec& s : specs_of(c))
    stack.push_back({std::make_shared<const LoraAdapter>(LoraAdapter::load(s.path, params)), s.strength});
  const Flux model = Flux::load(fs, params, kernels::default_weight_mode(), merged ? stack : LoraStack{});
  const std::optional<LoraSet> set = merged ? std::nullopt : std::optional(LoraSet::bind(model, stack));
  WeightStore as = WeightStore::open(weights_dir() + "ae.safetensors");
  const AutoEncoder ae = AutoEncoder::load(as, AutoEncoderParams::resolve(as, ""));

  const Tensor noise = f.tensor("noise");
  const int64_t h = noise.dim(2), w = noise.dim(3);
  const Tensor txt = f.tensor("txt").reshape(Shape{f.tensor("txt").dim(1), f.tensor("txt").dim(2)});
  const Tensor y = f.tensor("vec").reshape(Shape{f.tensor("vec").dim(1)});
  const Tensor latents = f.tensor("latents"), preds = f.tensor("preds");
  const int64_t s = latents.dim(1), steps = preds.dim(0);
  const Tensor img_ids = make_img_ids(h, w), txt_ids = make_txt_ids(txt.dim(0));
  double max_latent = 0, max_pred = 0;
  VelocityFn velocity = [&](const Tensor& x, float t) {
    return model.forward(x, img_ids, txt, txt_ids, t, y, 0.0f, {}, {}, set ? &*set : nullptr);
  };
  StepFn on_step = [&](int k, const Tensor& x, const Tensor& v, float, float) {
    max_latent = std::max(max_latent, test::compare(x, latents.slice_rows(k, k + 1).reshape(Shape{s, 64})).max_rel);
    max_pred = std::max(max_pred, test::compare(v, preds.slice_rows(k, k + 1).reshape(Shape{s, 64})).max_rel);
  };
  const Tensor out = denoise(velocity, pack_latent(noise.reshape(Shape{16, h, w})),
                             get_schedule(static_cast<int>(steps), s, false), on_step);
  max_latent = std::max(max_latent, test::compare(out, latents.slice_rows(steps, steps + 1)).max_rel);
  const Tensor image = ae.decode(unpack_latent(out, h, w));
  const double img_err = test::compare(image, f.tensor("image")).max_rel;
  std::printf("[ lora e2e ] %s: latents %.2e preds %.2e image %.2e\n", tag.c_str(), max_latent, max_pred, img_err);
  EXPECT_LE(max_latent, 1e-4);
  EXPECT_LE(max_pred, 1e-4);
  EXPECT_LE(img_err, 1e-4);
  expect_u8(tag + " sampler", image_from_tensor(image), f.tensor("image_u8"));
}

TEST(LoraE2E, SamplerMerged) {
  for (const Case& c : kCases) run_sampler(c, true);
}
TEST(LoraE2E, SamplerRuntime) {
  for (const Case& c : kCases) run_sampler(c, false);
}

ModelPaths schnell_paths() {
  ModelPaths p;
  p.diffusion_model = weights_dir() + "flux1-schnell.safetensors";
  p.vae = weights_dir() + "ae.safetensors";
  p.clip_l = weights_dir() + "clip_l.safetensors";
  p.t5xxl = weights_dir() + "t5xxl.safetensors";
  p.tokenizers = test::tokenizer_dir();
  return p;
}

GenerateRequest cat_request(const SafetensorsFile& f) {
  GenerateRequest r;
  r.prompt = "a photo of a cat";
  r.width = r.height = 64;
  r.steps = 4;
  r.seed = 1;
  r.noise = f.tensor("noise");
  return r;
}

// From the prompt, with the adapters fixed at load (generate --lora), in both modes.
TEST(LoraE2E, PipelineWithAdaptersFixedAtLoad) {
  for (const LoraMode mode : {LoraMode::merged, LoraMode::runtime})
    for (const Case& c : kCases) {
      LoadOptions o;
      o.loras = specs_of(c);
      o.lora_mode = mode;
      auto p = Pipeline::load(schnell_paths(), o);
      const SafetensorsFile f = golden(c);
      const GenerateResult res = p->run(cat_request(f), {}, {});
      expect_u8(str_cat(c.name, mode == LoraMode::merged ? " merged" : " runtime", " prompt path"), res.image,
                f.tensor("image_u8"));
    }
}

// The server's way: per-request adapters on one loaded pipeline. A request with adapters gives the reference
// image; the next request without any gives the plain model's image bit for bit.
TEST(LoraE2E, PerRequestAdaptersDoNotLeakIntoTheNextRequest) {
  auto p = Pipeline::load(schnell_paths(), {});
  const SafetensorsFile plain_ref = SafetensorsFile::open(test::golden_dir() + "/e2e_schnell_64x64.safetensors");
  const GenerateRequest plain = cat_request(plain_ref);
  const Image before = p->run(plain, {}, {}).image;
  expect_u8("plain, before", before, plain_ref.tensor("image_u8"));
  for (const Case& c : kCases) {
    GenerateRequest r = cat_request(golden(c));
    r.loras = specs_of(c);
    expect_u8(str_cat(c.name, " per request"), p->run(r, {}, {}).image, golden(c).tensor("image_u8"));
    const Image after = p->run(plain, {}, {}).image;
    EXPECT_EQ(after.pixels, before.pixels) << "the request without adapters after " << c.name;
  }
  // A bad adapter fails that job only, naming the key.
  GenerateRequest bad = plain;
  bad.loras = {{lora_dir() + "lora_bad_shape.safetensors", 1.0f}};
  try {
    p->run(bad, {}, {});
    ADD_FAILURE() << "lora_bad_shape accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lora_unet_double_blocks_0_img_attn_qkv"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p->run(plain, {}, {}).image.pixels, before.pixels);
}

double mean_abs_diff(const Image& img, const Tensor& want) {
  double sum = 0;
  for (int64_t i = 0; i < want.numel(); ++i)
    sum += std::abs(int(img.pixels[static_cast<size_t>(i)]) - int(want.data<uint8_t>()[i]));
  return sum / static_cast<double>(want.numel());
}

// A quantized (GGUF Q8_0) transformer: the automatic mode applies the adapters at run time (a merge would have to
// re-quantize). No reference exists for LoRA on Q8_0; the image is much nearer the f32 reference with the adapter
// than the plain one is (the adapter moves the image by 7-11 grey levels on average, Q8_0 by far less).
TEST(LoraE2E, QuantizedWeightsTakeTheAdapterAtRunTime) {
  ModelPaths paths = schnell_paths();
  paths.diffusion_model = test::golden_dir() + "/gguf/city96-flux1-schnell-Q8_0.gguf";
  LoadOptions o;
  o.loras = specs_of(kCases[0]);
  o.precision = kernels::Precision::f32;
  auto p = Pipeline::load(paths, o);
  const SafetensorsFile f = golden(kCases[0]);
  const Image img = p->run(cat_request(f), {}, {}).image;
  const double to_lora = mean_abs_diff(img, f.tensor("image_u8"));
  const double to_plain = mean_abs_diff(
      img, SafetensorsFile::open(test::golden_dir() + "/e2e_schnell_64x64.safetensors").tensor("image_u8"));
  std::printf(
      "[ lora q8  ] a1.0 on Q8_0 at run time: mean |diff| %.2f to the f32 LoRA reference, %.2f to the plain one\n",
      to_lora, to_plain);
  EXPECT_LT(to_lora * 3, to_plain);
  LoadOptions merge = o;
  merge.lora_mode = LoraMode::merged;
  try {
    Pipeline::load(paths, merge);
    ADD_FAILURE() << "--lora-mode merge accepted on quantized weights";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quantized"), std::string::npos) << e.what();
  }
}

// --lora-dir: names resolve inside the folder only.
TEST(LoraDir, ResolvesNamesInsideTheFolderOnly) {
  namespace fs = std::filesystem;
  const std::string root = test::temp_dir("lora_dir");
  const std::string dir = root + "/loras";
  fs::create_directories(dir + "/styles");
  fs::copy_file(lora_dir() + "lora_a_kohya.safetensors", dir + "/a.safetensors");
  fs::copy_file(lora_dir() + "lora_c_xlabs.safetensors", dir + "/styles/c.safetensors");
  fs::copy_file(lora_dir() + "lora_b_comfy.safetensors", root + "/outside.safetensors");
  fs::create_symlink(root + "/outside.safetensors", dir + "/link_out.safetensors");
  fs::create_symlink(dir + "/a.safetensors", dir + "/link_in.safetensors");
  std::ofstream(dir + "/notes.safetensors") << "not a safetensors file";

  EXPECT_EQ(resolve_lora_name(dir, "a"), fs::canonical(dir + "/a.safetensors").string());
  EXPECT_EQ(resolve_lora_name(dir, "a.safetensors"), fs::canonical(dir + "/a.safetensors").string());
  EXPECT_EQ(resolve_lora_name(dir, "styles/c"), fs::canonical(dir + "/styles/c.safetensors").string());
  EXPECT_EQ(resolve_lora_name(dir, "link_in"), fs::canonical(dir + "/a.safetensors").string());
  const auto refused = [&](const std::string& name, LoraNameError::Kind kind, const std::string& words) {
    try {
      resolve_lora_name(dir, name);
      ADD_FAILURE() << name << " accepted";
    } catch (const LoraNameError& e) {
      EXPECT_EQ(e.kind, kind) << name;
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(name.substr(0, 10)), std::string::npos) << e.what();
    }
  };
  refused("../outside", LoraNameError::Kind::invalid, "\"..\"");
  refused("styles/../../outside", LoraNameError::Kind::invalid, "\"..\"");
  refused("/etc/passwd", LoraNameError::Kind::invalid, "absolute");
  refused("link_out", LoraNameError::Kind::invalid, "outside --lora-dir");
  refused("missing", LoraNameError::Kind::not_found, "not found");
  refused("", LoraNameError::Kind::invalid, "empty");
  refused("notes", LoraNameError::Kind::invalid, "not a LoRA");

  const std::vector<LoraFileInfo> list = list_lora_dir(dir);
  std::vector<std::string> names;
  for (const LoraFileInfo& i : list) names.push_back(i.name + ":" + i.format);
  EXPECT_EQ(names, (std::vector<std::string>{"a:kohya", "link_in:kohya", "styles/c:xlabs"}));
  EXPECT_EQ(list[0].size, fs::file_size(dir + "/a.safetensors"));
}

}  // namespace
}  // namespace flux
