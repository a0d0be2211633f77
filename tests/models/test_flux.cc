// The FLUX transformer against the reference's outputs (golden/transformer_{schnell,dev}.safetensors), from BFL
// single files and from diffusers folders; parameters resolution, taps, cancellation and load errors.
#include <stop_token>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/flux.h"
#include "test_util.h"

namespace flux {
namespace {

struct Source {
  std::string weights;  // file or folder
  std::string config;   // diffusers config.json or empty
};

Source bfl_source(const std::string& variant) {
  return {test::golden_dir() + "/weights/flux1-" + variant + ".safetensors", ""};
}
Source diffusers_source(const std::string& variant) {
  const std::string dir = test::golden_dir() + "/models/FLUX.1-" + variant + "/transformer";
  return {dir, dir + "/config.json"};
}

Flux load_flux(const Source& s) {
  WeightStore store = WeightStore::open(s.weights);
  const FluxParams p = FluxParams::resolve(store, s.config);
  return Flux::load(store, p);
}

// Runs the golden case of `variant` and returns max|a-b|/max|b| of the output.
double golden_error(const Flux& flux, const std::string& variant, const TensorTap& tap = {}) {
  const SafetensorsFile g = SafetensorsFile::open(test::golden_dir() + "/transformer_" + variant + ".safetensors");
  const float t = g.tensor("timesteps").data<float>()[0];
  const float guidance = g.find("guidance") ? g.tensor("guidance").data<float>()[0] : 0.0f;
  const Tensor out = flux.forward(g.tensor("img"), g.tensor("img_ids"), g.tensor("txt"), g.tensor("txt_ids"), t,
                                  g.tensor("y"), guidance, {}, tap);
  const Tensor want = g.tensor("output");
  EXPECT_EQ(out.numel(), want.numel());
  const test::Diff d = test::compare(out, want);
  std::printf("[ flux %s ] max_rel %.3g rms_rel %.3g\n", variant.c_str(), d.max_rel, d.rms_rel);
  return d.max_rel;
}

TEST(Flux, ResolvesParamsFromShapesMetadataAndConfig) {
  for (const Source& s :
       {bfl_source("dev"), diffusers_source("dev"), bfl_source("schnell"), diffusers_source("schnell")}) {
    WeightStore store = WeightStore::open(s.weights);
    const FluxParams p = FluxParams::resolve(store, s.config);
    EXPECT_EQ(p.hidden_size, 64) << s.weights;
    EXPECT_EQ(p.num_heads, 4);
    EXPECT_EQ(p.depth, 2);
    EXPECT_EQ(p.depth_single_blocks, 2);
    EXPECT_EQ(p.vec_in_dim, 32);
    EXPECT_EQ(p.context_in_dim, 32);
    EXPECT_EQ(p.in_channels, 64);
    EXPECT_EQ(p.out_channels, 64);
    EXPECT_FLOAT_EQ(p.mlp_ratio, 4.0f);
    EXPECT_EQ(p.axes_dim, (std::array<int64_t, 3>{4, 6, 6}));
    EXPECT_EQ(p.guidance_embed, s.weights.find("dev") != std::string::npos) << s.weights;
  }
}

TEST(Flux, ResolvesFromShapesAlone) {
  // The diffusers file without its config.json: everything from the tensor shapes.
  WeightStore store = WeightStore::open(diffusers_source("dev").weights + "/diffusion_pytorch_model.safetensors");
  const FluxParams p = FluxParams::resolve(store, "");
  EXPECT_EQ(p.hidden_size, 64);
  EXPECT_EQ(p.num_heads, 4);  // head_dim 16 from query_norm.scale
  EXPECT_EQ(p.depth, 2);
  EXPECT_EQ(p.depth_single_blocks, 2);
  EXPECT_EQ(p.axes_dim, (std::array<int64_t, 3>{4, 6, 6}));
  EXPECT_TRUE(p.guidance_embed);
}

TEST(Flux, SchnellMatchesReferenceBfl) { EXPECT_LE(golden_error(load_flux(bfl_source("schnell")), "schnell"), 1e-4); }
TEST(Flux, DevMatchesReferenceBfl) { EXPECT_LE(golden_error(load_flux(bfl_source("dev")), "dev"), 1e-4); }
TEST(Flux, SchnellMatchesReferenceDiffusers) {
  EXPECT_LE(golden_error(load_flux(diffusers_source("schnell")), "schnell"), 1e-4);
}
TEST(Flux, DevMatchesReferenceDiffusers) { EXPECT_LE(golden_error(load_flux(diffusers_source("dev")), "dev"), 1e-4); }

TEST(Flux, PerCallWeightModeMatchesReference) {
  WeightStore store = WeightStore::open(bfl_source("schnell").weights);
  const Flux flux = Flux::load(store, FluxParams::resolve(store, ""), kernels::WeightMode::per_call);
  EXPECT_LE(golden_error(flux, "schnell"), 1e-4);
}

TEST(Flux, Bf16DiffusersWeightsStayClose) {
  // Real checkpoints are bf16: the diffusers file with every tensor rounded to bf16 (q/k/v joined in bf16).
  const Source src = diffusers_source("dev");
  const SafetensorsFile f = SafetensorsFile::open(src.weights + "/diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const SafetensorsEntry& e : f.entries()) tensors.emplace_back(e.name, f.tensor(e).to(DType::bf16));
  const std::string path = test::temp_dir("flux") + "/bf16.safetensors";
  write_safetensors(path, tensors);
  const double err = golden_error(load_flux({path, src.config}), "dev");
  EXPECT_LE(err, 1e-2);  // bf16 weights (8-bit mantissa) and bf16 activations in the products
  EXPECT_GT(err, 1e-6);  // it did run in bf16
}

TEST(Flux, TapsEveryBlock) {
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  golden_error(load_flux(bfl_source("schnell")), "schnell", [&](const std::string& name, const Tensor& value) {
    names.push_back(name);
    shapes.push_back(value.shape());
  });
  const std::vector<std::string> want = {"vec",
                                         "txt_in",
                                         "img_in",
                                         "double_blocks.0.txt",
                                         "double_blocks.0.img",
                                         "double_blocks.1.txt",
                                         "double_blocks.1.img",
                                         "single_blocks.0",
                                         "single_blocks.1",
                                         "final"};
  EXPECT_EQ(names, want);
  ASSERT_EQ(shapes.size(), want.size());
  EXPECT_EQ(shapes[4], (Shape{15, 64}));   // double_blocks.0.img [S, hidden]
  EXPECT_EQ(shapes[7], (Shape{271, 64}));  // single_blocks.0 [L + S, hidden]
  EXPECT_EQ(shapes[9], (Shape{15, 64}));   // final [S, out_channels]
}

TEST(Flux, StopTokenCancelsBetweenBlocks) {
  const Flux flux = load_flux(bfl_source("schnell"));
  const SafetensorsFile g = SafetensorsFile::open(test::golden_dir() + "/transformer_schnell.safetensors");
  std::stop_source source;
  int blocks_seen = 0;
  const TensorTap tap = [&](const std::string& name, const Tensor&) {
    if (name.rfind("double_blocks.0.img", 0) == 0) source.request_stop();
    if (name.find("blocks.") != std::string::npos) ++blocks_seen;
  };
  EXPECT_THROW(flux.forward(g.tensor("img"), g.tensor("img_ids"), g.tensor("txt"), g.tensor("txt_ids"), 0.5f,
                            g.tensor("y"), 0.0f, source.get_token(), tap),
               Cancelled);
  EXPECT_EQ(blocks_seen, 2);  // double_blocks.0 txt + img, then stopped before double_blocks.1
}

TEST(Flux, RejectsBadInputShapes) {
  const Flux flux = load_flux(bfl_source("schnell"));
  const Tensor img = Tensor::zeros(DType::f32, {4, 63});
  const Tensor ids = Tensor::zeros(DType::f32, {4, 3});
  const Tensor txt = Tensor::zeros(DType::f32, {2, 32});
  const Tensor txt_ids = Tensor::zeros(DType::f32, {2, 3});
  const Tensor y = Tensor::zeros(DType::f32, {32});
  try {
    flux.forward(img, ids, txt, txt_ids, 0.5f, y, 0.0f);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("img: expected f32 [n, 64]"), std::string::npos) << e.what();
  }
}

TEST(Flux, MissingAndMisshapedTensorsAreNamed) {
  // A copy of the schnell file without one tensor and with another of the wrong shape.
  const std::string src = bfl_source("schnell").weights;
  const SafetensorsFile f = SafetensorsFile::open(src);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const SafetensorsEntry& e : f.entries()) {
    if (e.name == "single_blocks.1.linear2.weight") continue;
    if (e.name == "double_blocks.0.txt_attn.proj.bias") {
      tensors.emplace_back(e.name, Tensor::zeros(DType::f32, {63}));
      continue;
    }
    tensors.emplace_back(e.name, f.tensor(e));
  }
  const std::string path = test::temp_dir("flux") + "/broken.safetensors";
  write_safetensors(path, tensors);  // no metadata config: the depth is counted
  WeightStore store = WeightStore::open(path);
  FluxParams p = FluxParams::resolve(store, "");
  EXPECT_EQ(p.depth_single_blocks, 1);  // counted from the tensors present
  p.depth_single_blocks = 2;
  try {
    Flux::load(store, p);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("single_blocks.1.linear2.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("double_blocks.0.txt_attn.proj.bias"), std::string::npos) << msg;
  }
}

TEST(Flux, BflAndDiffusersGiveTheSameOutput) {
  const SafetensorsFile g = SafetensorsFile::open(test::golden_dir() + "/transformer_dev.safetensors");
  const auto run = [&](const Flux& f) {
    return f.forward(g.tensor("img"), g.tensor("img_ids"), g.tensor("txt"), g.tensor("txt_ids"), 0.7f, g.tensor("y"),
                     2.0f);
  };
  const Tensor a = run(load_flux(bfl_source("dev"))), b = run(load_flux(diffusers_source("dev")));
  EXPECT_LE(test::compare(a, b).max_rel, 1e-6);
}

TEST(Flux, KeepsItsScratchBetweenStepsOfOneSequenceLength) {
  const Flux flux = load_flux(bfl_source("schnell"));
  const SafetensorsFile g = SafetensorsFile::open(test::golden_dir() + "/transformer_schnell.safetensors");
  const auto run = [&](const Flux& f, int64_t n_img) {
    const Tensor img = g.tensor("img"), ids = g.tensor("img_ids");
    const auto rows = [&](const Tensor& t) { return t.reshape({t.numel() / t.dim(-1), t.dim(-1)}).slice_rows(0, n_img); };
    return f.forward(rows(img), rows(ids), g.tensor("txt"), g.tensor("txt_ids"), 0.5f, g.tensor("y"), 0.0f).clone();
  };
  EXPECT_EQ(flux.scratch_bytes(), 0u);
  const Tensor first = run(flux, 15);
  const size_t kept = flux.scratch_bytes();
  EXPECT_GT(kept, 0u);
  const Tensor second = run(flux, 15);  // the same scratch again: nothing of the first step leaks into the second
  EXPECT_EQ(flux.scratch_bytes(), kept);
  EXPECT_EQ(test::compare(second, first).max_abs, 0.0);
  const Tensor shorter = run(flux, 9);  // another sequence length: a scratch of its size replaces the old one
  EXPECT_LT(flux.scratch_bytes(), kept);
  EXPECT_EQ(test::compare(shorter, run(load_flux(bfl_source("schnell")), 9)).max_abs, 0.0);
  flux.release_scratch();
  EXPECT_EQ(flux.scratch_bytes(), 0u);
  EXPECT_EQ(test::compare(run(flux, 15), first).max_abs, 0.0);
}

}  // namespace
}  // namespace flux
