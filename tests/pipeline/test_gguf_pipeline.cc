// GGUF model files through discovery and Pipeline::load: a folder holding flux1-dev-F32.gguf (sd.cpp-style
// "model.diffusion_model." names) and t5-v1_1-xxl-encoder-F32.gguf (llama.cpp T5 names and KV pairs), made
// from a test model's safetensors files, is found, detected as dev, and generates the same image as the
// safetensors originals.
#include <filesystem>

#include "io/gguf_test_writer.h"  // llama_cpp_t5_name
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "pipeline/model_discovery.h"
#include "pipeline/pipeline.h"
#include "pipeline/test_model.h"
#include "test_util.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

std::string gguf_model_dir(std::string& safetensors_dir) {
  safetensors_dir = test::temp_dir("gguf-pipeline-src");
  TestModelOptions o;
  o.variant = Variant::dev;
  o.layout = TestModelLayout::single_file;
  o.tokenizers = test::tokenizer_dir();
  o.seed = 5;
  make_test_model(safetensors_dir, o);

  const std::string dir = test::temp_dir("gguf-pipeline");
  for (const char* f : {"ae.safetensors", "clip_l.safetensors"})
    fs::copy_file(safetensors_dir + "/" + f, dir + "/" + f);
  for (const auto& e : fs::directory_iterator(safetensors_dir))
    if (e.is_directory()) fs::copy(e.path(), dir + "/" + e.path().filename().string(), fs::copy_options::recursive);

  std::vector<std::pair<std::string, Tensor>> flux;
  const SafetensorsFile transformer = SafetensorsFile::open(safetensors_dir + "/flux1-dev.safetensors");
  for (const SafetensorsEntry& e : transformer.entries())
    flux.emplace_back("model.diffusion_model." + e.name, transformer.tensor(e));
  write_gguf(dir + "/flux1-dev-F32.gguf", {}, flux, {.pad_last_tensor = false});  // sd-cli's layout

  std::vector<std::pair<std::string, Tensor>> t5;
  const SafetensorsFile t5_st = SafetensorsFile::open(safetensors_dir + "/t5xxl.safetensors");
  for (const SafetensorsEntry& e : t5_st.entries()) t5.emplace_back(test::llama_cpp_t5_name(e.name), t5_st.tensor(e));
  write_gguf(dir + "/t5-v1_1-xxl-encoder-F32.gguf", {{"general.architecture", GgufValue{std::string("t5encoder")}}},
             t5);
  return dir;
}

TEST(GgufPipeline, FolderOfGgufFilesGeneratesLikeSafetensors) {
  std::string src;
  const std::string dir = gguf_model_dir(src);
  ModelPaths paths;
  paths.model_dir = dir;
  const ModelFiles files = discover_model_files(paths);
  EXPECT_EQ(files.transformer.weights, dir + "/flux1-dev-F32.gguf");
  EXPECT_EQ(files.t5.weights, dir + "/t5-v1_1-xxl-encoder-F32.gguf");

  GenerateRequest r;
  r.prompt = "a red cube on a table";
  r.width = 64;
  r.height = 48;
  r.steps = 2;
  r.seed = 3;
  const auto gguf = Pipeline::load(paths, {});
  EXPECT_EQ(gguf->variant(), Variant::dev);  // guidance_in found under the stripped prefix
  ModelPaths st_paths;
  st_paths.model_dir = src;
  const auto st = Pipeline::load(st_paths, {});
  const GenerateResult a = gguf->run(r, {}, {}), b = st->run(r, {}, {});
  ASSERT_EQ(a.image.pixels.size(), 64u * 48 * 3);
  EXPECT_TRUE(a.image.pixels == b.image.pixels);

  // --diffusion-model / --t5xxl given as GGUF files override the folder's safetensors.
  ModelPaths overrides = st_paths;
  overrides.diffusion_model = dir + "/flux1-dev-F32.gguf";
  overrides.t5xxl = dir + "/t5-v1_1-xxl-encoder-F32.gguf";
  const ModelFiles o = discover_model_files(overrides);
  EXPECT_EQ(o.transformer.origin, "--diffusion-model");
  EXPECT_EQ(o.t5.weights, overrides.t5xxl);
}

}  // namespace
}  // namespace flux
