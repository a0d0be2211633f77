// `fluxcpp generate` and `fluxcpp make-test-model` end to end: the real binary on the golden diffusers folders with
// the stored noise (compared with image_u8), on make-test-model output in both layouts, and its error paths
// (exit status 1, one stderr line naming the field or file).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_util.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace flux {
namespace {

using test::last_line;
using test::run_cli;

using CliRun = test::RunResult;

struct Case {
  const char* name;
  bool dev;
  int height, width, steps;
  const char* prompt;
};
const Case kCases[] = {{"e2e_schnell_64x64", false, 64, 64, 4, "a photo of a cat"},
                       {"e2e_schnell_48x80", false, 48, 80, 4, "an astronaut riding a horse on the moon, digital art"},
                       {"e2e_dev_64x64", true, 64, 64, 6, "a photo of a cat"},
                       {"e2e_dev_48x80", true, 48, 80, 6, "A cat holding a sign that says hello world"}};

TEST(CliGenerate, GoldenDiffusersFoldersWithStoredNoise) {
  const std::string dir = test::temp_dir("cli-generate");
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const SafetensorsFile f = SafetensorsFile::open(test::golden_dir() + "/" + c.name + ".safetensors");
    const std::string noise = dir + "/" + c.name + "_noise.safetensors", png = dir + "/" + c.name + ".png";
    write_safetensors(noise, {{"noise", f.tensor("noise")}});
    const std::string model = test::golden_dir() + (c.dev ? "/models/FLUX.1-dev" : "/models/FLUX.1-schnell");
    // The size comes from the noise tensor when --width/--height are not given.
    const CliRun r = run_cli({"generate", "--model", model, "--noise", noise, "--prompt", c.prompt, "--steps",
                              std::to_string(c.steps), "--guidance", "3.5", "--output", png, "--threads", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("timings:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(str_cat("step ", c.steps, "/", c.steps)), std::string::npos) << r.err;
    const Image img = read_image(png);
    ASSERT_EQ(img.width, c.width);
    ASSERT_EQ(img.height, c.height);
    const Tensor want = f.tensor("image_u8");
    ASSERT_EQ(img.pixels.size(), static_cast<size_t>(want.numel()));
    int64_t n_diff = 0;
    int max_diff = 0;
    for (size_t i = 0; i < img.pixels.size(); ++i) {
      const int e = std::abs(int(img.pixels[i]) - int(want.data<uint8_t>()[i]));
      n_diff += e != 0;
      max_diff = std::max(max_diff, e);
    }
    std::printf("[ cli u8   ] %s: %lld/%zu values differ (max %d)\n", c.name, static_cast<long long>(n_diff),
                img.pixels.size(), max_diff);
    EXPECT_LE(max_diff, 1);
    EXPECT_LE(n_diff, want.numel() / 100);
    const auto text = read_png_text(png);
    ASSERT_TRUE(text.count("parameters"));
    EXPECT_NE(text.at("parameters").find(std::string("prompt: ") + c.prompt), std::string::npos);
    EXPECT_NE(text.at("parameters").find(str_cat("steps: ", c.steps)), std::string::npos);
    // Only dev uses guidance, so only its PNG records it.
    EXPECT_EQ(text.at("parameters").find("guidance: 3.5") != std::string::npos, c.dev) << text.at("parameters");
  }
}

// The README's first command on a fresh clone: no tokenizer files anywhere, so make-test-model writes its own
// test tokenizers and the whole pipeline runs on them.
TEST(CliGenerate, TestModelWithItsOwnTestTokenizers) {
  const std::string dir = test::temp_dir("cli-own-tokenizers") + "/model";
  CliRun r = run_cli({"make-test-model", dir});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(test::read_file(dir + "/tokenizer/README.txt").find("TEST TOKENIZER"), std::string::npos);
  EXPECT_NE(test::read_file(dir + "/tokenizer_2/tokenizer_config.json").find("fluxcpp_test_tokenizer"),
            std::string::npos);
  r = run_cli({"generate", "--model", dir, "-p", "a red fox in the snow", "-W", "32", "-H", "48", "--seed", "7", "-o",
               dir + ".png", "-q"});
  ASSERT_EQ(r.status, 0) << r.err;
  const Image img = read_image(dir + ".png");
  EXPECT_EQ(img.width, 32);
  EXPECT_EQ(img.height, 48);
  r = run_cli({"tokenize", "--tokenizers", dir, "a red fox"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("\"clip_ids\":[49406,"), std::string::npos) << r.out;
}

TEST(CliGenerate, UnknownFluxCpuIsAnError) {
  const CliRun r = test::run_process(
      {"/usr/bin/env", "FLUX_CPU=avx3", FLUX_CLI_PATH, "info", test::golden_dir() + "/clip.safetensors"});
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("FLUX_CPU: expected scalar, avx2 or avx512, got 'avx3'"), std::string::npos) << r.err;
}

TEST(CliGenerate, MakeTestModelBothLayoutsAgree) {
  const std::string dir = test::temp_dir("cli-make-test-model");
  for (const char* variant : {"schnell", "dev"}) {
    SCOPED_TRACE(variant);
    const std::string a = dir + "/" + variant + "-diffusers", b = dir + "/" + variant + "-single";
    CliRun r = run_cli({"make-test-model", a, "--variant", variant, "--layout", "diffusers", "--tokenizers",
                        test::tokenizer_dir(), "--seed", "3"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(std::filesystem::exists(a + "/model_index.json"));
    EXPECT_TRUE(std::filesystem::exists(a + "/tokenizer_2/spiece.model"));
    r = run_cli(
        {"make-test-model", b, "--variant", variant, "--layout", "single-file", "--tokenizers", a, "--seed", "3"});
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string flux_file = b + "/flux1-" + variant + ".safetensors";
    EXPECT_TRUE(std::filesystem::exists(flux_file));
    r = run_cli({"generate", "--model", a, "-p", "a cube", "-W", "64", "-H", "32", "--steps", "2", "--seed", "5", "-o",
                 a + ".png"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("wrote " + a + ".png (64x32, 2 steps, seed 5)"), std::string::npos) << r.out;
    r = run_cli({"generate",
                 "--diffusion-model",
                 flux_file,
                 "--vae",
                 b + "/ae.safetensors",
                 "--clip-l",
                 b + "/clip_l.safetensors",
                 "--t5xxl",
                 b + "/t5xxl.safetensors",
                 "--tokenizers",
                 b,
                 "-p",
                 "a cube",
                 "-W",
                 "64",
                 "-H",
                 "32",
                 "--steps",
                 "2",
                 "--seed",
                 "5",
                 "-o",
                 b + ".png",
                 "-q"});
    ASSERT_EQ(r.status, 0) << r.err;
    const Image ia = read_image(a + ".png"), ib = read_image(b + ".png");
    EXPECT_EQ(ia.pixels, ib.pixels);
  }
}

TEST(CliGenerate, Errors) {
  const std::string model = test::golden_dir() + "/models/FLUX.1-schnell";
  CliRun r = run_cli({"generate", "--model", model, "-p", "x", "-W", "100", "-H", "64"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(last_line(r.err), "fluxcpp: error: width: expected a multiple of 16, got 100 (nearest valid: 96 or 112)");
  r = run_cli({"generate", "--model", "/nonexistent", "-p", "x", "-W", "64", "-H", "64"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(last_line(r.err), "fluxcpp: error: --model: not a folder: /nonexistent");
  r = run_cli({"generate", "--vae", test::golden_dir() + "/weights/ae.safetensors", "-p", "x", "-W", "64", "-H", "64"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(last_line(r.err).find("missing transformer (--diffusion-model FILE or transformer/)"), std::string::npos)
      << r.err;
  const std::string dir = test::temp_dir("cli-generate-errors");
  write_safetensors(dir + "/bad.safetensors", {{"latent", Tensor::zeros(DType::f32, Shape{1, 16, 8, 8})}});
  r = run_cli({"generate", "--model", model, "-p", "x", "--noise", dir + "/bad.safetensors"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(last_line(r.err).find("no tensor 'noise'"), std::string::npos) << r.err;
  write_safetensors(dir + "/noise.safetensors", {{"noise", Tensor::zeros(DType::f32, Shape{1, 16, 8, 8})}});
  r = run_cli({"generate", "--model", model, "-p", "x", "--noise", dir + "/noise.safetensors", "-W", "128"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(last_line(r.err).find("is a 64x64 image's noise, but the size asked is 128x64"), std::string::npos)
      << r.err;
  r = run_cli({"make-test-model", dir + "/m", "--size", "huge", "--tokenizers", test::tokenizer_dir()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(last_line(r.err), "fluxcpp: error: --size: expected tiny, small, medium or full, got 'huge'");
}

}  // namespace
}  // namespace flux
