// GGUF files into the model loaders: a T5 encoder GGUF in llama.cpp's naming (token_embd, enc.blk.N.attn_q, ...,
// as city96's t5-v1_1-xxl-encoder-*.gguf) built here from the golden T5 weights loads through the T5 loader
// and gives the safetensors encoder's output bit for bit, with its config from the KV pairs or from the shapes;
// a Q8_0 token embedding is dequantized row by row; FLUX GGUF files (city96 and an sd.cpp-style prefixed dev
// file) resolve to the same parameters and variant as the safetensors weights.
#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/gguf_test_writer.h"  // llama_cpp_t5_name
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "io/weight_store.h"
#include "models/flux.h"
#include "models/t5_encoder.h"
#include "test_util.h"
#include "weight_files.h"

namespace flux {
namespace {

std::string t5_file() { return test::golden_dir() + "/weights/t5xxl.safetensors"; }

GgufValue u32(uint32_t x) { return GgufValue{x}; }

// The golden T5 as a GGUF file with llama.cpp names; `embedding` replaces shared.weight when given.
std::string write_t5_gguf(const std::string& tag, bool with_kv, const Tensor& embedding = {}) {
  std::vector<GgufKV> kv;
  if (with_kv) {
    kv = {
        {"general.architecture", GgufValue{std::string("t5encoder")}},
        {"t5encoder.context_length", u32(512)},
        {"t5encoder.embedding_length", u32(32)},
        {"t5encoder.feed_forward_length", u32(64)},
        {"t5encoder.block_count", u32(2)},
        {"t5encoder.attention.head_count", u32(4)},
        {"t5encoder.attention.key_length", u32(16)},
        {"t5encoder.attention.value_length", u32(16)},
        {"t5encoder.attention.layer_norm_epsilon", GgufValue{1e-6f}},
        {"t5encoder.attention.relative_buckets_count", u32(32)},
    };
  }
  test::Tensors tensors;
  for (const auto& [name, t] : test::read_all(t5_file()))
    tensors.emplace_back(test::llama_cpp_t5_name(name), name == "shared.weight" && embedding.defined() ? embedding : t);
  const std::string path = test::cleaned_temp_dir(tag) + "/t5-v1_1-xxl-encoder-test.gguf";
  write_gguf(path, std::move(kv), tensors);
  return path;
}

std::vector<int32_t> some_ids() {
  std::vector<int32_t> ids;
  for (int i = 0; i < 77; ++i) ids.push_back((i * 7919 + 13) % 32128);
  ids.push_back(1);
  return ids;
}

bool identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(GgufModels, T5FromGgufEqualsSafetensors) {
  WeightStore st_store = WeightStore::open(t5_file());
  const T5Config want = T5Config::resolve(st_store, "");
  const T5Encoder reference = T5Encoder::load(st_store, want);

  WeightStore store = WeightStore::open(write_t5_gguf("t5-gguf", true));
  EXPECT_TRUE(store.contains("enc.blk.0.attn_rel_b.weight"));
  EXPECT_EQ(store.metadata().at("t5encoder.attention.layer_norm_epsilon"), "1e-06");
  const T5Config c = T5Config::resolve(store, "");  // from the KV pairs, vocab from token_embd
  EXPECT_EQ(c.vocab_size, want.vocab_size);
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.d_kv, 16);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.d_ff, 64);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.relative_attention_num_buckets, 32);
  EXPECT_EQ(c.layer_norm_epsilon, want.layer_norm_epsilon);
  const T5Encoder model = T5Encoder::load(store, c);  // maps the names; finish() checks none is left unused
  EXPECT_TRUE(store.contains("encoder.block.1.layer.1.DenseReluDense.wo.weight"));
  EXPECT_FALSE(store.contains("token_embd.weight"));
  EXPECT_TRUE(identical(model.forward(some_ids()), reference.forward(some_ids())));
}

TEST(GgufModels, T5ConfigFromGgufShapesWithoutKv) {
  WeightStore store = WeightStore::open(write_t5_gguf("t5-gguf-nokv", false));
  const T5Config c = T5Config::resolve(store, "");  // llama.cpp names, before any renaming
  EXPECT_EQ(c.vocab_size, 32128);
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.num_heads, 4);  // from attn_rel_b [32, 4]
  EXPECT_EQ(c.d_kv, 16);
  EXPECT_EQ(c.d_ff, 64);
  EXPECT_EQ(c.num_layers, 2);
  T5Encoder::use_hf_names(store);
  EXPECT_TRUE(store.contains("shared.weight"));
  EXPECT_TRUE(store.contains("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_TRUE(store.contains("encoder.final_layer_norm.weight"));
  EXPECT_EQ(store.names().size(), 21u);
}

TEST(GgufModels, T5BadKvNamesTheKey) {
  const std::string path = test::cleaned_temp_dir("t5-badkv") + "/t5.gguf";
  write_gguf(path, {{"general.architecture", GgufValue{std::string("t5")}}, {"t5.block_count", GgufValue{int32_t{-2}}}},
             {});
  WeightStore store = WeightStore::open(path);
  try {
    T5Config::resolve(store, "");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV 't5.block_count': expected a positive integer, got '-2'"),
              std::string::npos)
        << e.what();
  }
}

// Q8_0 rows (ggml's block_q8_0: f16 d = max|x| / 127, 32 int8 q = round(x / d)), for a test embedding.
Tensor quantize_q8_0(const Tensor& x) {
  const int64_t n = x.numel();
  std::string bytes(static_cast<size_t>(n / 32 * 34), '\0');
  const float* p = x.data<float>();
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(p[b * 32 + j]));
    const float d = amax / 127.0f;
    const Tensor dh = Tensor::from_f32({1}, std::vector<float>{d}).to(DType::f16);
    std::memcpy(&bytes[static_cast<size_t>(b * 34)], dh.raw(), 2);
    for (int j = 0; j < 32; ++j)
      bytes[static_cast<size_t>(b * 34 + 2 + j)] = static_cast<char>(d == 0 ? 0 : std::lround(p[b * 32 + j] / d));
  }
  auto owner = std::make_shared<std::string>(std::move(bytes));
  return Tensor::view(DType::q8_0, x.shape(), owner->data(), owner).clone();
}

TEST(GgufModels, T5QuantizedEmbeddingDequantizedPerRow) {
  const Tensor shared = SafetensorsFile::open(t5_file()).tensor("shared.weight");
  const Tensor q = quantize_q8_0(shared);
  Tensor dequantized;
  try {
    dequantized = q.to(DType::f32);
  } catch (const Error& e) {
    GTEST_SKIP() << "no dequantization yet: " << e.what();
  }
  WeightStore store = WeightStore::open(write_t5_gguf("t5-q8", true, q));
  const T5Config c = T5Config::resolve(store, "");
  const T5Encoder model = T5Encoder::load(store, c);
  WeightStore plain = WeightStore::open(write_t5_gguf("t5-q8-f32", true, dequantized));
  const T5Encoder reference = T5Encoder::load(plain, c);
  EXPECT_TRUE(identical(model.forward(some_ids()), reference.forward(some_ids())));
}

TEST(GgufModels, FluxParamsFromCity96Gguf) {
  WeightStore st = WeightStore::open(test::golden_dir() + "/weights/flux1-schnell.safetensors");
  WeightStore gg = WeightStore::open(test::golden_dir() + "/gguf/city96-flux1-schnell-Q8_0.gguf");
  const FluxParams want = FluxParams::resolve(st, ""), got = FluxParams::resolve(gg, "");
  EXPECT_FALSE(got.guidance_embed);  // schnell
  EXPECT_EQ(got.hidden_size, want.hidden_size);
  EXPECT_EQ(got.num_heads, want.num_heads);
  EXPECT_EQ(got.depth, want.depth);
  EXPECT_EQ(got.depth_single_blocks, want.depth_single_blocks);
  EXPECT_EQ(got.context_in_dim, want.context_in_dim);
  EXPECT_EQ(got.vec_in_dim, want.vec_in_dim);
  EXPECT_EQ(got.axes_dim, want.axes_dim);
  EXPECT_EQ(gg.get("double_blocks.0.img_attn.qkv.weight").dtype(), DType::q8_0);
}

// sd.cpp-style dev file: F32, every name under "model.diffusion_model.". Same params (dev) and same output.
TEST(GgufModels, PrefixedDevGgufLoadsLikeSafetensors) {
  const std::string source = test::golden_dir() + "/weights/flux1-dev.safetensors";
  test::Tensors tensors;
  for (const auto& [name, t] : test::read_all(source)) tensors.emplace_back("model.diffusion_model." + name, t);
  const std::string path = test::cleaned_temp_dir("flux-gguf") + "/flux1-dev-F32.gguf";
  write_gguf(path, {}, tensors);

  WeightStore st = WeightStore::open(source);
  WeightStore gg = WeightStore::open(path);
  Flux::strip_checkpoint_prefix(gg);
  const FluxParams p = FluxParams::resolve(gg, "");
  EXPECT_TRUE(p.guidance_embed);  // dev: guidance_in present
  const Flux a = Flux::load(st, FluxParams::resolve(st, "")), b = Flux::load(gg, p);
  const int64_t n_img = 16, n_txt = 8;
  const Tensor img = Tensor::from_f32({n_img, p.in_channels}, test::random_floats(n_img * p.in_channels, 1));
  const Tensor txt = Tensor::from_f32({n_txt, p.context_in_dim}, test::random_floats(n_txt * p.context_in_dim, 2));
  const Tensor img_ids = Tensor::zeros(DType::f32, {n_img, 3}), txt_ids = Tensor::zeros(DType::f32, {n_txt, 3});
  const Tensor y = Tensor::from_f32({p.vec_in_dim}, test::random_floats(p.vec_in_dim, 3));
  EXPECT_TRUE(identical(a.forward(img, img_ids, txt, txt_ids, 0.5f, y, 3.5f),
                        b.forward(img, img_ids, txt, txt_ids, 0.5f, y, 3.5f)));
}

}  // namespace
}  // namespace flux
