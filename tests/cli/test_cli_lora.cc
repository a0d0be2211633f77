// `fluxcpp generate --lora FILE[:STRENGTH]` end to end on the golden schnell diffusers folder with the stored noise:
// the combined case a1.0 + b0.6 (two formats stacked) merged and at run time against the reference image_u8; a bad
// adapter refused on one line naming the key; --lora-lenient turning unknown keys into one warning.
#include <filesystem>

#include "cli_util.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace flux {
namespace {

using test::run_cli;

std::string lora(const std::string& stem) { return test::golden_dir() + "/lora/" + stem + ".safetensors"; }

struct CliCase {
  std::string dir, noise;
  CliCase() : dir(test::temp_dir("cli-lora")), noise(dir + "/noise.safetensors") {
    const SafetensorsFile f = SafetensorsFile::open(lora("e2e_schnell_64x64_a1.0_b0.6"));
    write_safetensors(noise, {{"noise", f.tensor("noise")}});
  }
  std::vector<std::string> args(const std::string& png) const {
    return {"generate",
            "--model",
            test::golden_dir() + "/models/FLUX.1-schnell",
            "--noise",
            noise,
            "--prompt",
            "a photo of a cat",
            "--steps",
            "4",
            "--output",
            png,
            "--threads",
            "2"};
  }
};

TEST(CliLora, StackedAdaptersMergedAndAtRunTime) {
  const CliCase s;
  const Tensor want = SafetensorsFile::open(lora("e2e_schnell_64x64_a1.0_b0.6")).tensor("image_u8");
  for (const char* mode : {"merge", "runtime", "auto"}) {
    SCOPED_TRACE(mode);
    const std::string png = s.dir + "/" + mode + ".png";
    std::vector<std::string> a = s.args(png);
    for (const std::string& x : std::vector<std::string>{"--lora", lora("lora_a_kohya"), "--lora",
                                                         lora("lora_b_diffusers") + ":0.6", "--lora-mode", mode})
      a.push_back(x);
    const test::RunResult r = run_cli(a);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find(std::string(mode) == "runtime" ? "applied at run time" : "merged into"), std::string::npos)
        << r.err;
    const Image img = read_image(png);
    ASSERT_EQ(img.pixels.size(), static_cast<size_t>(want.numel()));
    int n_diff = 0, max_diff = 0;
    for (size_t i = 0; i < img.pixels.size(); ++i) {
      const int e = std::abs(int(img.pixels[i]) - int(want.data<uint8_t>()[i]));
      n_diff += e != 0;
      max_diff = std::max(max_diff, e);
    }
    EXPECT_LE(max_diff, 1);
    EXPECT_LE(n_diff, want.numel() / 100);
  }
}

TEST(CliLora, BadAdapterIsOneErrorLineNamingTheKey) {
  const CliCase s;
  for (const auto& [stem, key] : {std::pair{"lora_bad_shape", "lora_unet_double_blocks_0_img_attn_qkv"},
                                  std::pair{"lora_bad_rank", "lora_unet_double_blocks_0_img_attn_proj"},
                                  std::pair{"lora_bad_names", "lora_unet_double_blocks_7_img_attn_proj"}}) {
    std::vector<std::string> a = s.args(s.dir + "/bad.png");
    a.push_back("--lora");
    a.push_back(lora(stem));
    const test::RunResult r = run_cli(a);
    EXPECT_EQ(r.status, 1) << stem;
    EXPECT_NE(r.err.find(key), std::string::npos) << r.err;
  }
  std::vector<std::string> a = s.args(s.dir + "/missing.png");
  a.push_back("--lora");
  a.push_back(s.dir + "/nope.safetensors:0.5");
  const test::RunResult r = run_cli(a);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("nope.safetensors"), std::string::npos) << r.err;
}

TEST(CliLora, LenientModeWarnsOnceListingUnknownKeys) {
  const CliCase s;
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const char* stem : {"lora_a_kohya", "lora_bad_names"}) {
    const SafetensorsFile f = SafetensorsFile::open(lora(stem));
    for (const SafetensorsEntry& e : f.entries()) tensors.emplace_back(e.name, f.tensor(e).clone());
  }
  const std::string mixed = s.dir + "/mixed.safetensors";
  write_safetensors(mixed, tensors);
  std::vector<std::string> a = s.args(s.dir + "/lenient.png");
  a.push_back("--lora");
  a.push_back(mixed);
  EXPECT_EQ(run_cli(a).status, 1);
  a.push_back("--lora-lenient");
  const test::RunResult r = run_cli(a);
  ASSERT_EQ(r.status, 0) << r.err;
  size_t warnings = 0;
  for (size_t at = r.err.find("lora_unet_double_blocks_7_img_attn_proj"); at != std::string::npos;
       at = r.err.find("lora_unet_double_blocks_7_img_attn_proj", at + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1u) << r.err;
  EXPECT_NE(r.err.find("lora_unet_double_blocks_0_img_attn_out"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace flux
