// T5 encoder against the reference outputs in shared/golden/t5.safetensors (tiny random T5 v1.1 layout,
// L = 256 and 512, no attention mask), loaded from the single file, the diffusers folder, bf16/f16/f8 copies;
// relative position buckets; embedding name variants; weight-binding errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/cpu.h"
#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/t5_encoder.h"
#include "tensor/convert.h"
#include "test_util.h"
#include "weight_files.h"

namespace flux {
namespace {

std::string t5_file() { return test::golden_dir() + "/weights/t5xxl.safetensors"; }
std::string t5_folder() { return test::golden_dir() + "/models/FLUX.1-schnell/text_encoder_2"; }

using test::read_all;
using test::Tensors;
using test::write_temp;

std::map<std::string, std::string> golden_metadata() { return WeightStore::open(t5_file()).metadata(); }

T5Encoder load(const std::string& path, const std::string& config_path = "") {
  WeightStore store = WeightStore::open(path);
  return T5Encoder::load(store, T5Config::resolve(store, config_path));
}

// Worst rel err over the golden cases of length `len` (256 or 512); `reference` overrides the golden outputs.
double golden_error(const T5Encoder& model, int64_t len, const T5Encoder* reference = nullptr) {
  const SafetensorsFile golden = SafetensorsFile::open(test::golden_dir() + "/t5.safetensors");
  const Tensor ids = golden.tensor(str_cat("input_ids_", len));           // I64 [N, L]
  const Tensor want = golden.tensor(str_cat("last_hidden_state_", len));  // F32 [N, L, d_model]
  const int64_t d = want.dim(2);
  double worst = 0;
  for (int64_t i = 0; i < ids.dim(0); ++i) {
    const int64_t* p = ids.data<int64_t>() + i * len;
    const std::vector<int32_t> row(p, p + len);
    const Tensor got = model.forward(row);
    EXPECT_EQ(got.shape(), Shape({len, d}));
    const Tensor expected = reference ? reference->forward(row) : want.slice_rows(i, i + 1).reshape({len, d});
    worst = std::max(worst, test::compare(got, expected).max_rel);
  }
  return worst;
}

TEST(T5Encoder, RelativePositionBucket) {
  // transformers' _relative_position_bucket(bidirectional=True, 32 buckets, max distance 128), by hand:
  // keys before the query (negative) use buckets 0..15, after it 16..31; |n| < 8 exact, then
  // 8 + floor(log(n/8) / log(16) * 8), capped at 15.
  EXPECT_EQ(t5_relative_position_bucket(0, 32, 128), 0);
  EXPECT_EQ(t5_relative_position_bucket(-1, 32, 128), 1);
  EXPECT_EQ(t5_relative_position_bucket(1, 32, 128), 17);
  EXPECT_EQ(t5_relative_position_bucket(-7, 32, 128), 7);
  EXPECT_EQ(t5_relative_position_bucket(7, 32, 128), 23);
  EXPECT_EQ(t5_relative_position_bucket(-8, 32, 128), 8);
  EXPECT_EQ(t5_relative_position_bucket(15, 32, 128), 16 + 9);  // log(1.875)/log(16)*8 = 1.81
  EXPECT_EQ(t5_relative_position_bucket(-16, 32, 128), 10);     // exactly 2 in float32 too
  EXPECT_EQ(t5_relative_position_bucket(-32, 32, 128), 12);
  EXPECT_EQ(t5_relative_position_bucket(-127, 32, 128), 15);  // 7.98
  EXPECT_EQ(t5_relative_position_bucket(-128, 32, 128), 15);
  EXPECT_EQ(t5_relative_position_bucket(500, 32, 128), 31);
  int64_t prev = 0;
  for (int64_t n = 0; n < 600; ++n) {  // monotone in |n| on each side
    const int64_t b = t5_relative_position_bucket(-n, 32, 128);
    EXPECT_GE(b, prev);
    EXPECT_LE(b, 15);
    EXPECT_EQ(t5_relative_position_bucket(n, 32, 128), n == 0 ? 0 : b + 16);
    prev = b;
  }
}

TEST(T5Encoder, GoldenSingleFile) {
  const T5Encoder model = load(t5_file());
  EXPECT_EQ(model.config().d_model, 32);
  EXPECT_EQ(model.config().d_kv, 16);
  const double e256 = golden_error(model, 256), e512 = golden_error(model, 512);
  std::printf("T5 golden max rel err: L=256 %.3g, L=512 %.3g\n", e256, e512);
  EXPECT_LE(e256, 1e-4);
  EXPECT_LE(e512, 1e-4);
}

TEST(T5Encoder, GoldenDiffusersFolderWithConfigJson) {
  const T5Encoder model = load(t5_folder(), t5_folder());
  EXPECT_LE(golden_error(model, 256), 1e-4);
  // Same folder without metadata: only config.json can tell the config (d_kv 16 with d_model 32).
  const std::string path = write_temp("t5-nometa", read_all(t5_folder() + "/model.safetensors"), {});
  const std::string dir = std::filesystem::path(path).parent_path().string();
  std::filesystem::copy_file(t5_folder() + "/config.json", dir + "/config.json");
  const T5Encoder from_json = load(dir, dir);
  EXPECT_EQ(from_json.config().num_heads, 4);
  EXPECT_LE(golden_error(from_json, 256), 1e-4);
}

TEST(T5Encoder, ConfigFromShapes) {
  const std::string path = write_temp("t5-shapes", read_all(t5_file()), {});
  WeightStore store = WeightStore::open(path);
  const T5Config c = T5Config::resolve(store, "");
  EXPECT_EQ(c.vocab_size, 32128);
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.num_heads, 4);  // from relative_attention_bias [32, 4]
  EXPECT_EQ(c.d_kv, 16);      // q [64, 32] / 4 heads
  EXPECT_EQ(c.d_ff, 64);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.relative_attention_num_buckets, 32);
  EXPECT_LE(golden_error(T5Encoder::load(store, c), 256), 1e-4);
}

TEST(T5Encoder, ReducedPrecisionWeights) {
  // kernels::Linear multiplies bf16/f16 weights as bf16 x bf16-rounded activations (on AVX512_BF16 CPUs),
  // so f16 weights get about the bf16 error too.
  for (const DType dtype : {DType::bf16, DType::f16}) {
    const double tol = 3e-2;
    Tensors tensors = read_all(t5_file());
    for (auto& [name, t] : tensors) t = t.to(dtype);
    const double err = golden_error(load(write_temp("t5-half", tensors, golden_metadata())), 256);
    std::printf("T5 %s weights: max rel err %.3g\n", dtype_name(dtype), err);
    EXPECT_LE(err, tol) << dtype_name(dtype);
    EXPECT_GT(err, 0.0);
  }
}

// Nearest float8 e4m3fn code of v (ties away; only finite codes).
uint8_t to_f8(float v) {
  uint8_t best = 0;
  float best_err = INFINITY;
  for (int c = 0; c < 256; ++c) {
    const float f = f8e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isfinite(f) && std::fabs(f - v) < best_err) {
      best_err = std::fabs(f - v);
      best = static_cast<uint8_t>(c);
    }
  }
  return best;
}

// Linear weights (".weight" of q/k/v/o/wi_0/wi_1/wo) stored as f8 codes of w / scale; `scaled` adds ComfyUI's
// scale_weight tensors and marker. Also returns the f32 model those codes stand for.
std::pair<Tensors, Tensors> f8_copy(bool scaled) {
  Tensors f8, dequant;
  for (auto& [name, t] : read_all(t5_file())) {
    const bool linear = name.find("SelfAttention.") != std::string::npos && name.find("relative") == std::string::npos;
    if (!linear && name.find("DenseReluDense.") == std::string::npos) {
      f8.emplace_back(name, t);
      dequant.emplace_back(name, t);
      continue;
    }
    const float scale = scaled ? 0.01f : 1.0f;
    Tensor codes = Tensor::empty(DType::f8_e4m3, t.shape());
    Tensor values = Tensor::empty(DType::f32, t.shape());
    for (int64_t i = 0; i < t.numel(); ++i) {
      const uint8_t c = to_f8(t.data<float>()[i] / scale);
      static_cast<uint8_t*>(codes.raw_mut())[i] = c;
      values.mut<float>()[i] = f8e4m3_to_f32(c) * scale;
    }
    f8.emplace_back(name, codes);
    dequant.emplace_back(name, values);
    if (scaled) {
      const std::string prefix = name.substr(0, name.size() - std::string("weight").size());
      f8.emplace_back(prefix + "scale_weight", Tensor::from_f32({}, std::vector<float>{scale}));
    }
  }
  if (scaled) f8.emplace_back("scaled_fp8", Tensor::zeros(DType::f8_e4m3, {0}));
  return {f8, dequant};
}

TEST(T5Encoder, Float8Weights) {
  // With bf16 compute (AVX512_BF16) the f8 weights multiply bf16-rounded activations: loose; with f32 compute
  // (capped to scalar) plain and scaled f8 must reproduce the f32 model of the same values.
  for (const bool capped : {false, true}) {
    const IsaLevel previous = capped ? set_cpu_cap(IsaLevel::scalar) : isa_level();
    const double tol = cpu_features().avx512_bf16 ? 2e-2 : 1e-5;
    for (const bool scaled : {false, true}) {
      const auto [f8, dequant] = f8_copy(scaled);
      const T5Encoder model = load(write_temp("t5-f8", f8, golden_metadata()));
      const T5Encoder reference = load(write_temp("t5-f8ref", dequant, golden_metadata()));
      const double err = golden_error(model, 256, &reference);
      std::printf("T5 f8%s weights (%s) vs the f32 model of the same values: max rel err %.3g\n",
                  scaled ? " scaled" : "", isa_name(isa_level()), err);
      EXPECT_LE(err, tol) << (scaled ? "scaled" : "plain") << " " << isa_name(isa_level());
    }
    set_cpu_cap(previous);
  }
}

TEST(T5Encoder, EmbedTokensNameVariants) {
  Tensors both = read_all(t5_file());
  Tensor shared;
  for (auto& [name, t] : both)
    if (name == "shared.weight") shared = t;
  both.emplace_back("encoder.embed_tokens.weight", shared);
  EXPECT_LE(golden_error(load(write_temp("t5-both", both, golden_metadata())), 256), 1e-4);

  Tensors only_embed = read_all(t5_file());
  for (auto& [name, t] : only_embed)
    if (name == "shared.weight") name = "encoder.embed_tokens.weight";
  EXPECT_LE(golden_error(load(write_temp("t5-embed", only_embed, golden_metadata())), 256), 1e-4);
}

TEST(T5Encoder, MissingTensorIsNamed) {
  Tensors tensors = read_all(t5_file());
  const std::string dropped = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
  std::erase_if(tensors, [&](const auto& p) { return p.first == dropped || p.first == "shared.weight"; });
  tensors.emplace_back("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight",
                       Tensor::zeros(DType::f32, {32, 4}));
  try {
    load(write_temp("t5-missing", tensors, golden_metadata()));
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dropped), std::string::npos) << msg;
    EXPECT_NE(msg.find("shared.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"), std::string::npos)
        << msg;
  }
}

TEST(T5Encoder, BadConfigAndInputsAreErrors) {
  const std::string dir = test::cleaned_temp_dir("t5-badcfg");
  { std::ofstream(dir + "/config.json") << R"({"d_model": 32, "feed_forward_proj": "relu"})"; }
  WeightStore store = WeightStore::open(t5_file());
  try {
    T5Config::resolve(store, dir);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("feed_forward_proj"), std::string::npos) << e.what();
  }
  const T5Encoder model = load(t5_file());
  EXPECT_THROW(model.forward(std::vector<int32_t>{5, 32128, 1}), Error);
  EXPECT_THROW(model.forward(std::vector<int32_t>{}), Error);
  EXPECT_NO_THROW(model.forward(std::vector<int32_t>{5, 1}));
  std::stop_source stop;
  stop.request_stop();
  EXPECT_THROW(model.forward(std::vector<int32_t>{5, 1}, stop.get_token()), Cancelled);
}

}  // namespace
}  // namespace flux
