// CLIP text model against the reference outputs in shared/golden/clip.safetensors (tiny random CLIP-L
// layout), loaded from the single file, the diffusers folder and bf16/f16 copies; weight-binding errors.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/clip_text.h"
#include "test_util.h"
#include "weight_files.h"

namespace flux {
namespace {

std::string clip_file() { return test::golden_dir() + "/weights/clip_l.safetensors"; }
std::string clip_folder() { return test::golden_dir() + "/models/FLUX.1-schnell/text_encoder"; }

using test::read_all;
using test::Tensors;
using test::write_temp;

std::vector<int32_t> row_ids(const Tensor& ids, int64_t row) {  // I64 [N, L] -> row as int32
  const int64_t len = ids.dim(1);
  const int64_t* p = ids.data<int64_t>() + row * len;
  return std::vector<int32_t>(p, p + len);
}

// Runs every golden case and returns the worst rel err of last_hidden_state and pooler_output.
std::pair<double, double> golden_errors(const ClipTextModel& model) {
  const SafetensorsFile golden = SafetensorsFile::open(test::golden_dir() + "/clip.safetensors");
  const Tensor ids = golden.tensor("input_ids");             // I64 [N, 77]
  const Tensor hidden = golden.tensor("last_hidden_state");  // F32 [N, 77, hidden]
  const Tensor pooled = golden.tensor("pooler_output");      // F32 [N, hidden]
  const int64_t n = ids.dim(0), len = ids.dim(1), d = hidden.dim(2);
  double worst_hidden = 0, worst_pooled = 0;
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<int32_t> row = row_ids(ids, i);
    const ClipTextModel::Output out = model.forward(row, ClipTextModel::first_eos(row));
    EXPECT_EQ(out.last_hidden_state.shape(), Shape({len, d}));
    EXPECT_EQ(out.pooled.shape(), Shape({d}));
    const test::Diff dh = test::compare(out.last_hidden_state, hidden.slice_rows(i, i + 1).reshape({len, d}));
    const test::Diff dp = test::compare(out.pooled, pooled.slice_rows(i, i + 1).reshape({d}));
    worst_hidden = std::max(worst_hidden, dh.max_rel);
    worst_pooled = std::max(worst_pooled, dp.max_rel);
  }
  return {worst_hidden, worst_pooled};
}

ClipTextModel load(const std::string& path, const std::string& config_path = "") {
  WeightStore store = WeightStore::open(path);
  return ClipTextModel::load(store, ClipTextConfig::resolve(store, config_path));
}

TEST(ClipText, FirstEosIsArgmax) {
  const std::vector<int32_t> ids = {49406, 320, 1125, 49407, 49407, 49407};
  EXPECT_EQ(ClipTextModel::first_eos(ids), 3);
}

TEST(ClipText, GoldenSingleFile) {
  const ClipTextModel model = load(clip_file());
  EXPECT_EQ(model.config().hidden_size, 32);
  EXPECT_EQ(model.config().num_attention_heads, 4);  // from the metadata's config, not hidden / 64
  const auto [hidden, pooled] = golden_errors(model);
  std::printf("CLIP golden max rel err: last_hidden_state %.3g, pooler_output %.3g\n", hidden, pooled);
  EXPECT_LE(hidden, 1e-4);
  EXPECT_LE(pooled, 1e-4);
}

TEST(ClipText, GoldenDiffusersFolderWithConfigJson) {
  // Without metadata the config can only come from config.json (shapes cannot give 4 heads of 8).
  const std::string path = write_temp("clip-nometa", read_all(clip_folder() + "/model.safetensors"), {});
  std::filesystem::copy_file(clip_folder() + "/config.json", std::filesystem::path(path).parent_path() / "config.json");
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const ClipTextModel model = load(dir, dir);
  EXPECT_EQ(model.config().num_attention_heads, 4);
  const auto [hidden, pooled] = golden_errors(model);
  EXPECT_LE(hidden, 1e-4);
  EXPECT_LE(pooled, 1e-4);
  // The real folder too.
  const ClipTextModel real = load(clip_folder(), clip_folder());
  const auto [hidden2, pooled2] = golden_errors(real);
  EXPECT_LE(hidden2, 1e-4);
  EXPECT_LE(pooled2, 1e-4);
}

TEST(ClipText, ReducedPrecisionWeights) {
  const WeightStore f32 = WeightStore::open(clip_file());
  // kernels::Linear multiplies bf16/f16 weights as bf16 x bf16-rounded activations (on AVX512_BF16 CPUs),
  // so f16 weights get about the bf16 error too.
  for (const DType dtype : {DType::bf16, DType::f16}) {
    const double tol = 1e-2;
    Tensors tensors = read_all(clip_file());
    for (auto& [name, t] : tensors) t = t.to(dtype);
    const std::string path = write_temp("clip-half", tensors, f32.metadata());
    const auto [hidden, pooled] = golden_errors(load(path));
    std::printf("CLIP %s weights: max rel err last_hidden_state %.3g, pooler_output %.3g\n", dtype_name(dtype), hidden,
                pooled);
    EXPECT_LE(hidden, tol) << dtype_name(dtype);
    EXPECT_LE(pooled, tol) << dtype_name(dtype);
    EXPECT_GT(hidden, 0.0) << "reduced weights should not be exact";
  }
}

TEST(ClipText, AcceptsPositionIdsAndTextProjection) {
  const WeightStore f32 = WeightStore::open(clip_file());
  Tensors tensors = read_all(clip_file());
  Tensor position_ids = Tensor::empty(DType::i64, {1, 77});
  for (int64_t i = 0; i < 77; ++i) position_ids.mut<int64_t>()[i] = i;
  tensors.emplace_back("text_model.embeddings.position_ids", position_ids);
  const std::vector<float> proj = test::random_floats(32 * 32, 7);
  tensors.emplace_back("text_projection.weight", Tensor::from_f32({32, 32}, proj));
  const auto [hidden, pooled] = golden_errors(load(write_temp("clip-extra", tensors, f32.metadata())));
  EXPECT_LE(hidden, 1e-4);
  EXPECT_LE(pooled, 1e-4);
}

std::string load_error(const Tensors& tensors, const std::map<std::string, std::string>& meta) {
  try {
    load(write_temp("clip-bad", tensors, meta));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ClipText, MissingTensorIsNamed) {
  const WeightStore f32 = WeightStore::open(clip_file());
  Tensors tensors = read_all(clip_file());
  const std::string dropped = "text_model.encoder.layers.1.mlp.fc2.weight";
  std::erase_if(tensors, [&](const auto& p) { return p.first == dropped; });
  const std::string msg = load_error(tensors, f32.metadata());
  EXPECT_NE(msg.find(dropped), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(ClipText, UnexpectedAndMisshapenTensorsAreNamed) {
  const WeightStore f32 = WeightStore::open(clip_file());
  Tensors tensors = read_all(clip_file());
  tensors.emplace_back("text_model.encoder.layers.5.mlp.fc1.weight", Tensor::zeros(DType::f32, {128, 32}));
  for (auto& [name, t] : tensors)
    if (name == "text_model.final_layer_norm.bias") t = Tensor::zeros(DType::f32, {31});
  const std::string msg = load_error(tensors, f32.metadata());
  EXPECT_NE(msg.find("text_model.encoder.layers.5.mlp.fc1.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("text_model.final_layer_norm.bias"), std::string::npos) << msg;
}

TEST(ClipText, ConfigFromShapes) {
  // No config.json, no metadata: dims from shapes, heads = hidden / 64 -- impossible for hidden 32.
  const std::string path = write_temp("clip-shapes", read_all(clip_file()), {});
  WeightStore store = WeightStore::open(path);
  try {
    ClipTextConfig::resolve(store, "");
    ADD_FAILURE() << "expected an Error for hidden 32";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size 32"), std::string::npos) << e.what();
  }
  // A 128-wide variant: 2 heads, 1 layer, intermediate 256, vocab 100, 16 positions.
  Tensors t;
  auto add = [&](const std::string& name, Shape shape) { t.emplace_back(name, Tensor::zeros(DType::f32, shape)); };
  add("text_model.embeddings.token_embedding.weight", {100, 128});
  add("text_model.embeddings.position_embedding.weight", {16, 128});
  add("text_model.encoder.layers.0.layer_norm1.weight", {128});
  add("text_model.encoder.layers.0.mlp.fc1.weight", {256, 128});
  WeightStore small = WeightStore::open(write_temp("clip-shapes2", t, {}));
  const ClipTextConfig c = ClipTextConfig::resolve(small, "");
  EXPECT_EQ(c.vocab_size, 100);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.num_hidden_layers, 1);
  EXPECT_EQ(c.intermediate_size, 256);
  EXPECT_EQ(c.max_position_embeddings, 16);
}

TEST(ClipText, BadConfigAndInputsAreErrors) {
  const std::string dir = test::cleaned_temp_dir("clip-badcfg");
  { std::ofstream(dir + "/config.json") << R"({"hidden_size": "wide"})"; }
  WeightStore store = WeightStore::open(clip_file());
  try {
    ClipTextConfig::resolve(store, dir);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ClipTextConfig::resolve(store, dir + "/nope.json"), Error);

  const ClipTextModel model = load(clip_file());
  std::vector<int32_t> ids = {49406, 49408, 49407};  // 49408 is outside the vocabulary
  EXPECT_THROW(model.forward(ids, 2), Error);
  ids[1] = 320;
  EXPECT_THROW(model.forward(ids, 3), Error);
  EXPECT_THROW(model.forward(std::vector<int32_t>(78, 320), 0), Error);
  EXPECT_NO_THROW(model.forward(ids, 2));
}

}  // namespace
}  // namespace flux
