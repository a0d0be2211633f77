// `fluxcpp generate --init-image FILE --strength S` end to end: the golden img2img cases through the real binary
// (diffusers folders, the stored init image as a PNG and the stored noise), and its error paths (exit status 1,
// one stderr line naming the flag or file).
#include <cstdio>
#include <filesystem>

#include "cli_util.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace flux {
namespace {

using test::last_line;
using test::run_cli;

struct Case {
  const char* name;
  bool dev;
  int steps;
  const char* strength;
  int steps_run;
};

TEST(CliImg2Img, GoldenCasesThroughTheBinary) {
  const std::string dir = test::temp_dir("cli-img2img");
  for (const Case& c :
       {Case{"img2img_schnell_s0.6", false, 4, "0.6", 3}, Case{"img2img_dev_s0.6", true, 6, "0.6", 4}}) {
    SCOPED_TRACE(c.name);
    const SafetensorsFile f = SafetensorsFile::open(test::golden_dir() + "/img2img/" + c.name + ".safetensors");
    const std::string noise = dir + "/" + c.name + "_noise.safetensors", init = dir + "/" + c.name + "_init.png",
                      out = dir + "/" + c.name + ".png";
    write_safetensors(noise, {{"noise", f.tensor("noise")}});
    const Tensor u8 = f.tensor("init_image_u8");
    write_png(init, Image{64, 64, std::vector<uint8_t>(u8.data<uint8_t>(), u8.data<uint8_t>() + u8.numel())});
    const std::string model = test::golden_dir() + (c.dev ? "/models/FLUX.1-dev" : "/models/FLUX.1-schnell");
    const test::RunResult r =
        run_cli({"generate", "--model", model, "--noise", noise, "--init-image", init, "--strength", c.strength,
                 "--prompt", "a photo of a cat", "--steps", std::to_string(c.steps), "--guidance", "3.5", "--output",
                 out, "--threads", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find(str_cat("step ", c.steps_run, "/", c.steps_run)), std::string::npos) << r.err;
    const Image img = read_image(out);
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
    const std::string params = read_png_text(out).at("parameters");
    EXPECT_NE(params.find(str_cat("strength: ", c.strength)), std::string::npos) << params;
    EXPECT_NE(params.find(str_cat("steps run: ", c.steps_run)), std::string::npos) << params;
  }
}

TEST(CliImg2Img, ErrorsNameTheProblem) {
  const std::string dir = test::temp_dir("cli-img2img-errors");
  const std::string model = test::golden_dir() + "/models/FLUX.1-schnell";
  const std::string init = dir + "/init.png", text = dir + "/not_an_image.png";
  write_png(init, Image{16, 16, std::vector<uint8_t>(16 * 16 * 3, 50)});
  std::FILE* t = std::fopen(text.c_str(), "w");
  ASSERT_NE(t, nullptr);
  std::fputs("hello, not a picture\n", t);
  std::fclose(t);
  struct Bad {
    std::vector<std::string> args;
    std::string why;
  };
  const std::vector<Bad> cases = {
      {{"--init-image", dir + "/missing.png"}, "missing.png"},
      {{"--init-image", text}, "not a PNG or JPEG"},
      {{"--init-image", init, "--strength", "1.5"}, "--strength: expected a number in [0, 1], got 1.5"},
      {{"--init-image", init, "--strength", "0", "--steps", "4"}, "strength 0 with 4 steps"},
      {{"--strength", "0.5"}, "--strength: only with --init-image"},
  };
  for (const Bad& b : cases) {
    std::vector<std::string> args = {"generate", "--model", model,           "-p", "x", "-W", "64", "-H",
                                     "64",       "-o",      dir + "/out.png"};
    args.insert(args.end(), b.args.begin(), b.args.end());
    const test::RunResult r = run_cli(args);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(last_line(r.err).find(b.why), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.png"));
}

}  // namespace
}  // namespace flux
