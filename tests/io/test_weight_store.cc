// WeightStore: binding checks reported together, sharded sets (an index built here), folders, prefixes, and the
// golden model folders.
#include <filesystem>
#include <fstream>
#include <functional>

#include "base/error.h"
#include "io/weight_store.h"
#include "test_util.h"

namespace flux {
namespace {

using test::error_of;

Tensor f32(const Shape& shape, uint64_t seed = 1) {
  return Tensor::from_f32(shape, test::random_floats(static_cast<size_t>(shape.numel()), seed));
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(WeightStore, RequireAndFinish) {
  const std::string path = test::temp_dir("ws") + "/m.safetensors";
  write_safetensors(path,
                    {{"a.weight", f32({4, 3})},
                     {"a.bias", Tensor::zeros(DType::bf16, {4})},
                     {"ids", Tensor::zeros(DType::i64, {7})},
                     {"extra", f32({1})},
                     {"buffer", f32({2})}},
                    {{"k", "v"}});
  WeightStore ws = WeightStore::open(path);
  EXPECT_EQ(ws.metadata().at("k"), "v");
  EXPECT_EQ(ws.files(), std::vector<std::string>{path});
  EXPECT_EQ(ws.source_of("a.weight"), path);
  EXPECT_EQ(ws.total_bytes(), 4u * 12 + 2 * 4 + 8 * 7 + 4 + 8);

  const Tensor w = ws.require("a.weight", {4, 3});
  ASSERT_TRUE(w.defined());
  EXPECT_EQ(w.data<float>()[5], f32({4, 3}).data<float>()[5]);
  const Tensor b = ws.require_f32("a.bias", {4});
  ASSERT_TRUE(b.defined());
  EXPECT_EQ(b.dtype(), DType::f32);
  EXPECT_FALSE(ws.require("a.weight", {3, 4}).defined());  // wrong shape
  EXPECT_FALSE(ws.require("ids", {7}).defined());          // not a float
  EXPECT_FALSE(ws.require("gone", {1}).defined());         // missing
  EXPECT_FALSE(ws.optional("also_gone", {1}).defined());   // optional: not a problem
  ws.ignore("buffer");

  EXPECT_EQ(ws.unused(), std::vector<std::string>{"extra"});
  const std::string msg = error_of([&] { ws.finish("test model (m.safetensors)"); });
  EXPECT_TRUE(has(msg, "test model (m.safetensors)")) << msg;
  EXPECT_TRUE(has(msg, "missing: gone")) << msg;
  EXPECT_FALSE(has(msg, "also_gone")) << msg;
  EXPECT_TRUE(has(msg, "a.weight: expected shape [3, 4], got [4, 3]")) << msg;
  EXPECT_TRUE(has(msg, "ids: expected a float dtype, got i64")) << msg;
  EXPECT_TRUE(has(msg, "unused: extra")) << msg;
  EXPECT_EQ(ws.missing().size(), 3u);

  // Not strict: the unused tensor alone is no problem; the rest still is.
  const std::string lax = error_of([&] { ws.finish("m", false); });
  EXPECT_FALSE(has(lax, "extra")) << lax;
  EXPECT_TRUE(has(lax, "gone")) << lax;
}

TEST(WeightStore, RequireF32Converts) {
  const std::string path = test::temp_dir("ws") + "/h.safetensors";
  Tensor h = Tensor::empty(DType::bf16, {2});
  auto* bits = static_cast<uint16_t*>(h.raw_mut());
  bits[0] = 0x3F80;  // 1.0
  bits[1] = 0xC020;  // -2.5
  write_safetensors(path, {{"h", h}});
  WeightStore ws = WeightStore::open(path);
  const Tensor f = ws.require_f32("h", {2});
  ASSERT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.data<float>()[0], 1.0f);
  EXPECT_EQ(f.data<float>()[1], -2.5f);
  EXPECT_EQ(ws.require("h", {2}).dtype(), DType::bf16);  // require() keeps the stored dtype
}

TEST(WeightStore, CleanFinish) {
  const std::string path = test::temp_dir("ws") + "/m.safetensors";
  write_safetensors(path, {{"x", f32({2, 2})}, {"y", f32({3})}});
  WeightStore ws = WeightStore::open(path);
  EXPECT_TRUE(ws.require("x", {}).defined());  // empty shape: no check
  EXPECT_TRUE(ws.optional("y", {3}).defined());
  EXPECT_NO_THROW(ws.finish("m"));
  EXPECT_TRUE(ws.unused().empty());
  EXPECT_THROW(ws.get("z"), Error);
  EXPECT_EQ(ws.get("y").shape(), Shape({3}));
}

TEST(WeightStore, StripPrefix) {
  const std::string path = test::temp_dir("ws") + "/c.safetensors";
  write_safetensors(path, {{"model.diffusion_model.img_in.weight", f32({2})}, {"vae.x", f32({1})}});
  WeightStore ws = WeightStore::open(path);
  ws.strip_prefix("model.diffusion_model.");
  EXPECT_TRUE(ws.contains("img_in.weight"));
  EXPECT_FALSE(ws.contains("model.diffusion_model.img_in.weight"));
  EXPECT_TRUE(ws.contains("vae.x"));
  EXPECT_EQ(ws.source_of("img_in.weight"), path);

  const std::string clash = test::temp_dir("ws") + "/d.safetensors";
  write_safetensors(clash, {{"p.a", f32({2})}, {"a", f32({1})}});
  WeightStore ws2 = WeightStore::open(clash);
  EXPECT_TRUE(has(error_of([&] { ws2.strip_prefix("p."); }), "'p.a' gives 'a'"));
}

// Two shards + an index, like Hugging Face's sharded checkpoints.
std::string make_sharded(const std::string& dir) {
  write_safetensors(dir + "/model-00001-of-00002.safetensors", {{"a", f32({2})}, {"b", f32({3})}});
  write_safetensors(dir + "/model-00002-of-00002.safetensors", {{"c", f32({4})}});
  const std::string index = dir + "/model.safetensors.index.json";
  std::ofstream(index) << R"({"metadata": {"total_size": 36}, "weight_map": {
      "a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
      "c": "model-00002-of-00002.safetensors"}})";
  return index;
}

TEST(WeightStore, ShardedIndex) {
  const std::string dir = test::temp_dir("ws");
  const std::string index = make_sharded(dir);
  for (const std::string& path : {index, dir}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(resolve_safetensors_files(path).size(), 2u);
    WeightStore ws = WeightStore::open(path);
    EXPECT_EQ(ws.names(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(ws.source_of("c"), dir + "/model-00002-of-00002.safetensors");
    EXPECT_EQ(ws.require("c", {4}).shape(), Shape({4}));
  }
}

TEST(WeightStore, ShardedIndexLies) {
  const std::string dir = test::temp_dir("ws");
  const std::string index = make_sharded(dir);
  std::ofstream(index) << R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
      "z": "model-00002-of-00002.safetensors"}})";
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(index); }), "'z'")) << error_of([&] { WeightStore::open(index); });
  std::ofstream(index) << R"({"weight_map": {"a": "model-00002-of-00002.safetensors",
      "b": "model-00001-of-00002.safetensors"}})";
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(index); }), "found in"));
  std::ofstream(index) << R"({"weight_map": {"a": "absent.safetensors"}})";
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(index); }), "does not exist"));
  std::ofstream(index) << R"({"weight_map": 3})";
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(index); }), "weight_map"));
  std::ofstream(index) << R"({"weight_map": {"a": "x", )";
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(index); }), "not valid JSON"));
}

TEST(WeightStore, FolderAndDuplicates) {
  const std::string dir = test::temp_dir("ws");
  write_safetensors(dir + "/one.safetensors", {{"a", f32({2})}});
  write_safetensors(dir + "/two.safetensors", {{"b", f32({2})}});
  EXPECT_EQ(WeightStore::open(dir).names(), (std::vector<std::string>{"a", "b"}));
  write_safetensors(dir + "/three.safetensors", {{"a", f32({2})}});
  const std::string msg = error_of([&] { WeightStore::open(dir); });
  EXPECT_TRUE(has(msg, "'a' is also in")) << msg;
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(test::temp_dir("empty")); }), "no .safetensors"));
  EXPECT_TRUE(has(error_of([&] { WeightStore::open(dir + "/absent.safetensors"); }), "absent.safetensors"));
}

TEST(WeightStore, GoldenWeightsAndModelFolders) {
  const std::string g = test::golden_dir();
  for (const char* file : {"ae", "clip_l", "flux1-dev", "flux1-schnell", "t5xxl"}) {
    WeightStore ws = WeightStore::open(g + "/weights/" + file + ".safetensors");
    EXPECT_FALSE(ws.names().empty()) << file;
  }
  EXPECT_EQ(WeightStore::open(g + "/weights/flux1-schnell.safetensors").names().size(), 80u);
  EXPECT_EQ(WeightStore::open(g + "/weights/flux1-dev.safetensors").names().size(), 84u);
  for (const char* model : {"FLUX.1-schnell", "FLUX.1-dev"}) {
    for (const char* sub : {"transformer", "vae", "text_encoder", "text_encoder_2"}) {
      const std::string path = g + "/models/" + model + "/" + sub;
      SCOPED_TRACE(path);
      WeightStore ws = WeightStore::open(path);
      EXPECT_FALSE(ws.names().empty());
      EXPECT_GT(ws.total_bytes(), 0u);
    }
  }
  // The diffusers text encoders hold the same tensors as the single files.
  WeightStore a = WeightStore::open(g + "/weights/clip_l.safetensors");
  WeightStore b = WeightStore::open(g + "/models/FLUX.1-schnell/text_encoder");
  EXPECT_EQ(a.names(), b.names());
}

}  // namespace
}  // namespace flux
