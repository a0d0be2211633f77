// LoRA adapters against the reference (shared/golden/lora/): every case in every format the README maps to it,
// merged into the weights and applied at run time; the merged weights alone; the bad adapters refused naming the
// key; lenient mode; 16-bit adapter files; a run-time set leaves the model as it was.
#include <cstdio>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/flux.h"
#include "models/lora.h"
#include "models/lora_runtime.h"
#include "test_util.h"

namespace flux {
namespace {

std::string lora_dir() { return test::golden_dir() + "/lora/"; }
std::string base_weights() { return test::golden_dir() + "/weights/flux1-schnell.safetensors"; }

FluxParams schnell_params() {
  WeightStore store = WeightStore::open(base_weights());
  return FluxParams::resolve(store, "");
}

Flux load_base(const LoraStack& merged = {}) {
  WeightStore store = WeightStore::open(base_weights());
  return Flux::load(store, FluxParams::resolve(store, ""), kernels::default_weight_mode(), merged);
}

std::shared_ptr<const LoraAdapter> adapter(const std::string& file, const LoraOptions& o = {}) {
  return std::make_shared<const LoraAdapter>(LoraAdapter::load(lora_dir() + file, schnell_params(), o));
}

// A golden case: adapters (letter, strength) and the file formats it is checked in.
struct Case {
  const char* name;
  std::vector<std::pair<char, float>> uses;
  std::vector<const char*> formats;
};
const Case kCases[] = {
    {"a1.0", {{'a', 1.0f}}, {"kohya", "comfy", "diffusers"}},
    {"a0.6", {{'a', 0.6f}}, {"kohya", "comfy", "diffusers"}},
    {"b1.0", {{'b', 1.0f}}, {"kohya", "comfy", "diffusers"}},
    {"a1.0_b0.6", {{'a', 1.0f}, {'b', 0.6f}}, {"kohya", "comfy", "diffusers"}},
    {"c0.8", {{'c', 0.8f}}, {"xlabs", "diffusers"}},
};

LoraStack stack_of(const Case& c, const std::string& format) {
  LoraStack s;
  for (const auto& [letter, strength] : c.uses)
    s.push_back({adapter(str_cat("lora_", letter, "_", format, ".safetensors")), strength});
  return s;
}

double output_error(const Flux& flux, const std::string& golden_file, const LoraSet* loras) {
  const SafetensorsFile g = SafetensorsFile::open(golden_file);
  const Tensor out = flux.forward(g.tensor("img"), g.tensor("img_ids"), g.tensor("txt"), g.tensor("txt_ids"),
                                  g.tensor("timesteps").data<float>()[0], g.tensor("y"), 0.0f, {}, {}, loras);
  EXPECT_EQ(out.numel(), g.tensor("output").numel());
  return test::compare(out, g.tensor("output")).max_rel;
}

TEST(Lora, DetectsFormats) {
  const std::pair<const char*, LoraFormat> files[] = {
      {"lora_a_kohya", LoraFormat::kohya},         {"lora_b_comfy", LoraFormat::comfyui},
      {"lora_a_diffusers", LoraFormat::diffusers}, {"lora_b_diffusers", LoraFormat::diffusers},
      {"lora_c_xlabs", LoraFormat::xlabs},         {"lora_c_diffusers", LoraFormat::diffusers}};
  for (const auto& [file, format] : files) {
    const auto a = adapter(str_cat(file, ".safetensors"));
    EXPECT_EQ(a->format(), format) << file;
    EXPECT_EQ(a->max_rank(), 4) << file;
  }
  // Modules per adapter (README table); diffusers splits q/k/v (and linear1) into several deltas.
  EXPECT_EQ(adapter("lora_a_kohya.safetensors")->deltas().size(), 26u);
  EXPECT_EQ(adapter("lora_b_comfy.safetensors")->deltas().size(), 10u);
  EXPECT_EQ(adapter("lora_c_xlabs.safetensors")->deltas().size(), 12u);
  EXPECT_EQ(adapter("lora_a_diffusers.safetensors")->deltas().size(), 40u);  // 80 keys / 2
}

TEST(Lora, GoldenTransformerMerged) {
  for (const Case& c : kCases)
    for (const char* format : c.formats) {
      const Flux flux = load_base(stack_of(c, format));
      const double err = output_error(flux, lora_dir() + "transformer_schnell_" + c.name + ".safetensors", nullptr);
      std::printf("[ lora merged  ] %-10s %-9s max_rel %.3g\n", c.name, format, err);
      EXPECT_LE(err, 1e-4) << c.name << " " << format;
    }
}

TEST(Lora, GoldenTransformerRuntime) {
  const Flux flux = load_base();
  for (const Case& c : kCases)
    for (const char* format : c.formats) {
      const LoraSet set = LoraSet::bind(flux, stack_of(c, format));
      const double err = output_error(flux, lora_dir() + "transformer_schnell_" + c.name + ".safetensors", &set);
      std::printf("[ lora runtime ] %-10s %-9s max_rel %.3g\n", c.name, format, err);
      EXPECT_LE(err, 1e-4) << c.name << " " << format;
    }
}

// The adapters change the output (README: 16-37 %): a LoRA that is silently dropped cannot pass the tests above.
TEST(Lora, WithoutTheAdapterTheOutputDiffers) {
  EXPECT_GT(output_error(load_base(), lora_dir() + "transformer_schnell_a1.0.safetensors", nullptr), 0.05);
}

// A run-time set changes only the call it is given to: the plain model's output stays bit for bit.
TEST(Lora, RuntimeSetLeavesTheModelUnchanged) {
  const Flux flux = load_base();
  const SafetensorsFile g = SafetensorsFile::open(test::golden_dir() + "/transformer_schnell.safetensors");
  const auto run = [&](const LoraSet* s) {
    return flux.forward(g.tensor("img"), g.tensor("img_ids"), g.tensor("txt"), g.tensor("txt_ids"),
                        g.tensor("timesteps").data<float>()[0], g.tensor("y"), 0.0f, {}, {}, s);
  };
  const Tensor before = run(nullptr);
  const LoraSet set = LoraSet::bind(flux, stack_of(kCases[3], "kohya"));
  const Tensor with = run(&set);
  const Tensor after = run(nullptr);
  EXPECT_GT(test::compare(with, before).max_rel, 0.05);
  EXPECT_EQ(test::compare(after, before).max_abs, 0.0);
  EXPECT_LE(test::compare(after, g.tensor("output")).max_rel, 1e-4);
}

// merge_lora alone against merged_a1.0_b0.6 (the 30 touched weights); every other weight is untouched.
TEST(Lora, MergedWeightsMatchReference) {
  const SafetensorsFile want = SafetensorsFile::open(lora_dir() + "merged_a1.0_b0.6.safetensors");
  const SafetensorsFile base = SafetensorsFile::open(base_weights());
  for (const char* format : {"kohya", "comfy", "diffusers"}) {
    const LoraStack stack = stack_of(kCases[3], format);
    size_t touched = 0;
    double worst = 0;
    for (const SafetensorsEntry& e : base.entries()) {
      if (e.shape.ndim() != 2 || e.name.size() < 7 || e.name.substr(e.name.size() - 7) != ".weight") continue;
      const std::string module = e.name.substr(0, e.name.size() - 7);
      if (!lora_touches(stack, module)) {
        EXPECT_EQ(want.find(e.name), nullptr) << e.name << " should be touched (" << format << ")";
        continue;
      }
      ++touched;
      ASSERT_NE(want.find(e.name), nullptr) << e.name << " is not touched by the reference";
      const Tensor merged = merge_lora(base.tensor(e), module, stack);
      worst = std::max(worst, test::compare(merged, want.tensor(e.name)).max_rel);
    }
    std::printf("[ lora merge   ] %-9s %zu weights, max_rel %.3g\n", format, touched, worst);
    EXPECT_EQ(touched, want.entries().size()) << format;
    EXPECT_LE(worst, 1e-6) << format;
  }
}

std::string error_of(const std::string& file, const LoraOptions& o = {}) {
  try {
    LoraAdapter::load(file, schnell_params(), o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Lora, BadAdaptersAreRefusedNamingTheKey) {
  const std::string shape = error_of(lora_dir() + "lora_bad_shape.safetensors");
  EXPECT_NE(shape.find("lora_unet_double_blocks_0_img_attn_qkv"), std::string::npos) << shape;
  EXPECT_NE(shape.find("shape mismatch"), std::string::npos) << shape;
  EXPECT_NE(shape.find("[192, 64]"), std::string::npos) << shape;
  const std::string rank = error_of(lora_dir() + "lora_bad_rank.safetensors");
  EXPECT_NE(rank.find("lora_unet_double_blocks_0_img_attn_proj"), std::string::npos) << rank;
  EXPECT_NE(rank.find("rank mismatch"), std::string::npos) << rank;
  const std::string names = error_of(lora_dir() + "lora_bad_names.safetensors");
  EXPECT_NE(names.find("lora_unet_double_blocks_7_img_attn_proj"), std::string::npos) << names;
  EXPECT_NE(names.find("lora_unet_double_blocks_0_img_attn_out"), std::string::npos) << names;
  EXPECT_NE(names.find("no module"), std::string::npos) << names;
  // Shape and rank problems stay errors in lenient mode.
  EXPECT_NE(error_of(lora_dir() + "lora_bad_shape.safetensors", {true}), "");
  EXPECT_NE(error_of(lora_dir() + "lora_bad_rank.safetensors", {true}), "");
  // A model file is not a LoRA.
  const std::string model = error_of(base_weights());
  EXPECT_NE(model.find("not a LoRA"), std::string::npos) << model;
}

// Adapter a plus the two unknown modules of lora_bad_names in one file: refused naming both, or in lenient mode
// loaded with them listed (the output then is adapter a's).
TEST(Lora, LenientModeIgnoresUnknownKeysWithOneWarning) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const char* file : {"lora_a_kohya.safetensors", "lora_bad_names.safetensors"}) {
    const SafetensorsFile f = SafetensorsFile::open(lora_dir() + file);
    for (const SafetensorsEntry& e : f.entries()) tensors.emplace_back(e.name, f.tensor(e).clone());
  }
  const std::string path = test::temp_dir("lora_lenient") + "/mixed.safetensors";
  write_safetensors(path, tensors);
  const std::string strict = error_of(path);
  EXPECT_NE(strict.find("lora_unet_double_blocks_7_img_attn_proj"), std::string::npos) << strict;
  EXPECT_NE(strict.find("lenient"), std::string::npos) << strict;
  const auto a = std::make_shared<const LoraAdapter>(LoraAdapter::load(path, schnell_params(), {true}));
  EXPECT_EQ(a->ignored_keys(), (std::vector<std::string>{"lora_unet_double_blocks_0_img_attn_out",
                                                         "lora_unet_double_blocks_7_img_attn_proj"}));
  EXPECT_EQ(a->deltas().size(), 26u);
  const Flux flux = load_base();
  const LoraSet set = LoraSet::bind(flux, {{a, 1.0f}});
  EXPECT_LE(output_error(flux, lora_dir() + "transformer_schnell_a1.0.safetensors", &set), 1e-4);
}

// The same adapter stored in bf16 and f16: read and widened; the output within the 16-bit rounding of the
// adapter's values.
TEST(Lora, SixteenBitAdapterFiles) {
  const SafetensorsFile f = SafetensorsFile::open(lora_dir() + "lora_a_kohya.safetensors");
  for (const DType dtype : {DType::bf16, DType::f16}) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const SafetensorsEntry& e : f.entries())
      tensors.emplace_back(e.name, e.shape.ndim() == 2 ? f.tensor(e).to(dtype) : f.tensor(e).clone());
    const std::string path = test::temp_dir("lora_16bit") + "/a_" + dtype_name(dtype) + ".safetensors";
    write_safetensors(path, tensors);
    const auto a = std::make_shared<const LoraAdapter>(LoraAdapter::load(path, schnell_params()));
    const Flux flux = load_base();
    const LoraSet set = LoraSet::bind(flux, {{a, 1.0f}});
    const double err = output_error(flux, lora_dir() + "transformer_schnell_a1.0.safetensors", &set);
    std::printf("[ lora %-5s  ] a1.0 max_rel %.3g\n", dtype_name(dtype), err);
    EXPECT_LE(err, dtype == DType::bf16 ? 5e-3 : 5e-4);
  }
}

}  // namespace
}  // namespace flux
