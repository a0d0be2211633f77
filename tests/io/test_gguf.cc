// GGUF reader: every golden file of shared/golden/gguf against its manifest.json (names, types, ne, torch
// shapes, offsets, bytes, KV keys), F32 tensors against their f32 source, F16/BF16 (and, once the kernels
// exist, the block types) against the gguf-py dequantized companions bit for bit; hand-built v2/v3 files with
// every KV type round-trip; the WeightStore reads GGUF by magic. Malformed files: test_gguf_malformed.cc.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/gguf.h"
#include "io/gguf_test_writer.h"
#include "io/safetensors.h"
#include "io/weight_store.h"
#include "test_util.h"

namespace flux {
namespace {

namespace fs = std::filesystem;
using test::GgufWriter;

std::string gguf_dir() { return test::golden_dir() + "/gguf"; }

nlohmann::json manifest() {
  std::ifstream in(gguf_dir() + "/manifest.json");
  return nlohmann::json::parse(in);
}

std::string type_name(const GgufTensorInfo& t) { return ggml_type_name(t.ggml_type); }

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(Gguf, EveryGoldenFileMatchesTheManifest) {
  const nlohmann::json m = manifest();
  size_t n_files = 0;
  for (const auto& e : fs::directory_iterator(gguf_dir()))
    if (e.path().extension() == ".gguf") ++n_files;
  ASSERT_EQ(m["files"].size(), n_files);
  ASSERT_GE(n_files, 24u);
  for (const auto& f : m["files"]) {
    const std::string path = gguf_dir() + "/" + f["file"].get<std::string>();
    SCOPED_TRACE(path);
    const GgufFile g = GgufFile::open(path);
    EXPECT_EQ(fs::file_size(path), f["bytes"].get<size_t>());
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), f["alignment"].get<uint64_t>());
    EXPECT_EQ(g.data_offset(), f["data_offset"].get<size_t>());
    ASSERT_EQ(g.kv().size(), f["kv"].size());
    for (const auto& [key, value] : f["kv"].items()) EXPECT_NE(g.find_kv(key), nullptr) << key;
    ASSERT_EQ(g.tensors().size(), f["tensors"].size());
    size_t i = 0;
    for (const auto& t : f["tensors"]) {
      const GgufTensorInfo& info = g.tensors()[i++];  // file order is the manifest's
      const std::string name = t["name"];
      EXPECT_EQ(info.name, name);
      EXPECT_EQ(type_name(info), t["type"].get<std::string>()) << name;
      EXPECT_EQ(info.ne, t["ne"].get<std::vector<uint64_t>>()) << name;
      EXPECT_EQ(info.shape.to_vector(), t["shape"].get<std::vector<int64_t>>()) << name;
      EXPECT_EQ(info.rel_offset, t["offset"].get<uint64_t>()) << name;
      EXPECT_EQ(info.offset, g.data_offset() + t["offset"].get<size_t>()) << name;
      EXPECT_EQ(info.nbytes, t["nbytes"].get<size_t>()) << name;
      const Tensor v = g.tensor(info);
      EXPECT_EQ(v.nbytes(), info.nbytes) << name;
      EXPECT_FALSE(v.writable()) << name;
    }
  }
}

TEST(Gguf, City96KeyValues) {
  const std::pair<const char*, uint32_t> files[] = {{"city96-flux1-schnell-Q8_0.gguf", 7},
                                                    {"city96-flux1-schnell-Q4_0.gguf", 2},
                                                    {"city96-flux1-schnell-Q4_K_S.gguf", 14}};
  for (const auto& [file, file_type] : files) {
    const GgufFile g = GgufFile::open(gguf_dir() + "/" + file);
    ASSERT_NE(g.find_kv("general.architecture"), nullptr) << file;
    EXPECT_EQ(*g.find_kv("general.architecture")->as_string(), "flux");
    EXPECT_EQ(g.find_kv("general.quantization_version")->type(), GgufType::u32);
    EXPECT_EQ(g.find_kv("general.quantization_version")->as_int(), 2);
    EXPECT_EQ(g.find_kv("general.file_type")->as_int(), file_type) << file;
    EXPECT_EQ(g.find_kv("general.alignment"), nullptr);  // default alignment
    EXPECT_EQ(g.alignment(), 32u);
  }
  // sd.cpp writes no KV pairs at all.
  EXPECT_TRUE(GgufFile::open(gguf_dir() + "/sdcpp-flux1-schnell-q8_0.gguf").kv().empty());
}

// Full-model F32 tensors are copies of the f32 source; the zoo's source is zoo.safetensors.
TEST(Gguf, F32TensorsEqualTheirSource) {
  const nlohmann::json m = manifest();
  size_t n_compared = 0;
  for (const auto& f : m["files"]) {
    const GgufFile g = GgufFile::open(gguf_dir() + "/" + f["file"].get<std::string>());
    const std::string source = f["source"];
    const SafetensorsFile src = SafetensorsFile::open(source == "zoo.safetensors" ? gguf_dir() + "/zoo.safetensors"
                                                                                  : test::golden_dir() + "/" + source);
    for (const GgufTensorInfo& t : g.tensors()) {
      if (t.dtype != DType::f32) continue;
      EXPECT_TRUE(same_bytes(g.tensor(t), src.tensor(t.name))) << g.path() << ": " << t.name;
      ++n_compared;
    }
  }
  EXPECT_EQ(n_compared, 299u);  // 54 + 76 + 3 x 50 (full models) + 24 x zoo.bias
}

// Every tensor of `dtypes` in the companion, converted by Tensor::to(f32), equals it bit for bit.
size_t compare_with_companions(const std::vector<DType>& dtypes) {
  size_t n = 0;
  const nlohmann::json m = manifest();
  for (const auto& f : m["files"]) {
    const GgufFile g = GgufFile::open(gguf_dir() + "/" + f["file"].get<std::string>());
    const SafetensorsFile companion = SafetensorsFile::open(gguf_dir() + "/" + f["companion"].get<std::string>());
    for (const GgufTensorInfo& t : g.tensors()) {
      if (std::find(dtypes.begin(), dtypes.end(), t.dtype) == dtypes.end()) continue;
      const SafetensorsEntry* want = companion.find(t.name);
      EXPECT_NE(want, nullptr) << g.path() << ": " << t.name << " not in the companion";
      if (want == nullptr) continue;
      EXPECT_TRUE(same_bytes(g.tensor(t).to(DType::f32), companion.tensor(*want))) << g.path() << ": " << t.name;
      ++n;
    }
  }
  return n;
}

TEST(Gguf, F16AndBF16EqualTheCompanions) {
  // city96: 4 F16 each (26 in Q4_K_S), zoo: 4 F16 or BF16 in each of the 4 16-bit files.
  EXPECT_EQ(compare_with_companions({DType::f16, DType::bf16}), 4u + 4u + 26u + 4u * 4u);
}

TEST(Gguf, QuantizedEqualTheCompanions) {
  const std::vector<DType> q = {DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                                DType::q2_K, DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K};
  try {
    Tensor::zeros(DType::q8_0, {1, 32}).to(DType::f32);
  } catch (const Error& e) {
    GTEST_SKIP() << "no dequantization yet: " << e.what();
  }
  // sd.cpp q8_0 26, kmix 4, city96 26 + 26 + 4, zoo 4 in each of 15 quantized files.
  EXPECT_EQ(compare_with_companions(q), 26u + 4u + 26u + 26u + 4u + 4u * 15u);
}

GgufValue v(auto x) { return GgufValue{x}; }

// One KV pair of every type, arrays of numbers, strings, bools and nested arrays (of differing element types).
std::vector<GgufKV> every_kv_type() {
  using test::gguf_array;
  return {
      {"t.u8", v(uint8_t{200})},
      {"t.i8", v(int8_t{-100})},
      {"t.u16", v(uint16_t{60000})},
      {"t.i16", v(int16_t{-30000})},
      {"t.u32", v(uint32_t{4000000000u})},
      {"t.i32", v(int32_t{-2000000000})},
      {"t.f32", v(1e-6f)},
      {"t.bool", v(true)},
      {"t.string", v(std::string("flux\nü"))},
      {"t.u64", v(uint64_t{18000000000000000000ull})},
      {"t.i64", v(int64_t{-9000000000000000000ll})},
      {"t.f64", v(0.1)},
      {"t.empty_string", v(std::string())},
      {"a.u32", gguf_array(GgufType::u32, {v(uint32_t{1}), v(uint32_t{2}), v(uint32_t{3})})},
      {"a.strings", gguf_array(GgufType::string, {v(std::string("<pad>")), v(std::string("</s>"))})},
      {"a.bool", gguf_array(GgufType::boolean, {v(false), v(true)})},
      {"a.empty", gguf_array(GgufType::f32, {})},
      {"a.nested", gguf_array(GgufType::array, {gguf_array(GgufType::i8, {v(int8_t{-1})}),
                                                gguf_array(GgufType::string, {v(std::string("x"))})})},
  };
}

void expect_same_value(const GgufValue& got, const GgufValue& want, const std::string& key) {
  ASSERT_EQ(got.type(), want.type()) << key;
  if (const GgufArray* a = want.as_array()) {
    ASSERT_EQ(got.as_array()->type, a->type) << key;
    ASSERT_EQ(got.as_array()->items.size(), a->items.size()) << key;
    for (size_t i = 0; i < a->items.size(); ++i) expect_same_value(got.as_array()->items[i], a->items[i], key);
  } else {
    EXPECT_TRUE(got.value == want.value) << key << ": " << got.str() << " vs " << want.str();
  }
}

GgufFile parse(const std::string& bytes, const std::string& name = "mem.gguf") {
  auto copy = std::make_shared<std::string>(bytes);
  return GgufFile::parse(copy, reinterpret_cast<const uint8_t*>(copy->data()), copy->size(), name);
}

TEST(Gguf, RoundTripV2AndV3EveryKvType) {
  for (uint32_t version : {2u, 3u}) {
    for (uint32_t alignment : {32u, 64u, 1u}) {
      SCOPED_TRACE(str_cat("v", version, " alignment ", alignment));
      GgufWriter w;
      w.version = version;
      w.alignment = alignment;
      w.kv = every_kv_type();
      if (alignment != 32) w.add_kv("general.alignment", v(alignment));
      const Tensor f32 = Tensor::from_f32({3, 5}, test::random_floats(15, 1));
      w.add_tensor("w.f32", f32);
      w.add_tensor("w.f16", f32.to(DType::f16));
      w.add_tensor("w.bf16", f32.to(DType::bf16));
      w.add_tensor("w.q8_0", 8, {64, 3}, std::string(3 * 2 * 34, '\x11'));
      w.add_tensor("w.q4_K", 12, {256, 1, 2}, std::string(2 * 144, '\x22'));
      w.add_tensor("w.scalar", 0, {}, std::string(4, '\x01'));
      w.add_tensor("w.empty", 0, {0, 4}, "");
      const GgufFile g = parse(w.bytes());
      EXPECT_EQ(g.version(), version);
      EXPECT_EQ(g.alignment(), alignment);
      EXPECT_EQ(g.data_offset() % alignment, 0u);
      ASSERT_EQ(g.kv().size(), w.kv.size());
      for (size_t i = 0; i < w.kv.size(); ++i) {
        EXPECT_EQ(g.kv()[i].key, w.kv[i].key);
        expect_same_value(g.kv()[i].value, w.kv[i].value, w.kv[i].key);
      }
      ASSERT_EQ(g.tensors().size(), w.tensors.size());
      EXPECT_TRUE(same_bytes(g.tensor("w.f32"), f32));
      EXPECT_TRUE(same_bytes(g.tensor("w.f16"), f32.to(DType::f16)));
      EXPECT_TRUE(same_bytes(g.tensor("w.bf16"), f32.to(DType::bf16)));
      const Tensor q8 = g.tensor("w.q8_0");
      EXPECT_EQ(q8.dtype(), DType::q8_0);
      EXPECT_EQ(q8.shape(), Shape({3, 64}));
      EXPECT_EQ(q8.nbytes(), 3u * 2 * 34);
      EXPECT_EQ(static_cast<const uint8_t*>(q8.raw())[0], 0x11);
      const Tensor q4 = g.tensor("w.q4_K");
      EXPECT_EQ(q4.shape(), Shape({2, 1, 256}));
      EXPECT_EQ(g.find("w.q4_K")->ne, (std::vector<uint64_t>{256, 1, 2}));
      EXPECT_EQ(g.tensor("w.scalar").shape(), Shape{});
      EXPECT_EQ(g.tensor("w.scalar").nbytes(), 4u);
      EXPECT_EQ(g.tensor("w.empty").shape(), Shape({4, 0}));
      EXPECT_EQ(g.data_bytes(), 15u * 4 + 15 * 2 * 2 + 3 * 2 * 34 + 2 * 144 + 4);
    }
  }
}

TEST(Gguf, ValuesPrint) {
  const std::vector<GgufKV> kv = every_kv_type();
  auto str = [&](const std::string& key) {
    for (const GgufKV& p : kv)
      if (p.key == key) return p.value.str(2);
    return std::string("?");
  };
  EXPECT_EQ(str("t.u8"), "200");
  EXPECT_EQ(str("t.i8"), "-100");
  EXPECT_EQ(str("t.f32"), "1e-06");  // shortest form that reads back as the same float
  EXPECT_EQ(std::stof(str("t.f32")), 1e-6f);
  EXPECT_EQ(str("t.f64"), "0.1");
  EXPECT_EQ(str("t.bool"), "true");
  EXPECT_EQ(str("t.u64"), "18000000000000000000");
  EXPECT_EQ(str("a.u32"), "[u32 x 3: 1, 2, ...]");
  EXPECT_EQ(str("a.strings"), "[string x 2: \"<pad>\", \"</s>\"]");
  EXPECT_EQ(str("a.empty"), "[f32 x 0]");
  EXPECT_EQ(str("a.nested"), "[array x 2: [i8 x 1: -1], [string x 1: \"x\"]]");
  EXPECT_EQ(v(uint64_t{1} << 63).as_int(), std::nullopt);
  EXPECT_EQ(v(uint16_t{7}).as_float(), 7.0);
  EXPECT_EQ(v(true).as_int(), std::nullopt);
}

TEST(Gguf, ViewsAreZeroCopyOverTheMapping) {
  const std::string path = gguf_dir() + "/city96-flux1-schnell-Q8_0.gguf";
  const GgufFile g = GgufFile::open(path);
  const Tensor a = g.tensor("double_blocks.0.img_attn.qkv.weight");
  const Tensor b = g.tensor("double_blocks.0.img_attn.qkv.weight");
  EXPECT_EQ(a.raw(), b.raw());
  EXPECT_EQ(a.dtype(), DType::q8_0);
  EXPECT_EQ(a.shape(), Shape({192, 64}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % 32, 0u);  // page-aligned map + aligned offsets
  EXPECT_THROW(g.tensor("nope"), Error);
  EXPECT_TRUE(is_gguf_file(path));
  EXPECT_FALSE(is_gguf_file(gguf_dir() + "/zoo.safetensors"));
  EXPECT_FALSE(is_gguf_file(gguf_dir() + "/no-such-file"));
}

TEST(Gguf, WeightStoreOpensGgufByMagic) {
  // The name says nothing: the magic decides.
  const std::string dir = test::temp_dir("gguf-store");
  fs::copy_file(gguf_dir() + "/city96-flux1-schnell-Q4_K_S.gguf", dir + "/transformer.bin");
  WeightStore store = WeightStore::open(dir + "/transformer.bin");
  EXPECT_EQ(store.metadata().at("general.architecture"), "flux");
  EXPECT_EQ(store.metadata().at("general.file_type"), "14");
  EXPECT_EQ(store.names().size(), 80u);
  EXPECT_EQ(store.total_bytes(), GgufFile::open(dir + "/transformer.bin").data_bytes());
  const Tensor q = store.require("double_blocks.0.img_mlp.2.weight", {64, 256});  // Q4_K, as stored
  ASSERT_TRUE(q.defined());
  EXPECT_EQ(q.dtype(), DType::q4_K);
  EXPECT_EQ(q.raw(), store.get("double_blocks.0.img_mlp.2.weight").raw());
  const Tensor h = store.require_f32("txt_in.weight", {});  // F16 -> f32
  EXPECT_EQ(h.dtype(), DType::f32);
  const Tensor bad = store.require("img_in.weight", {1, 2});
  EXPECT_FALSE(bad.defined());
  try {
    store.finish("flux transformer", false);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("img_in.weight: expected shape [1, 2], got [64, 64]"), std::string::npos)
        << e.what();
  }
}

TEST(Gguf, WeightStoreStripsSdcppPrefixAndMixesFiles) {
  GgufWriter w;
  w.add_tensor("model.diffusion_model.img_in.weight", Tensor::from_f32({2, 2}, std::vector<float>{1, 2, 3, 4}));
  w.add_tensor("model.diffusion_model.guidance_in.in_layer.weight", Tensor::zeros(DType::f16, {2, 2}));
  const std::string dir = test::temp_dir("gguf-prefix");
  w.write(dir + "/sdcpp.gguf");
  write_safetensors(dir + "/extra.safetensors", {{"other", Tensor::zeros(DType::f32, {1})}});
  WeightStore store = WeightStore::open(dir + "/sdcpp.gguf");
  store.add_file(dir + "/extra.safetensors");
  store.strip_prefix("model.diffusion_model.");
  EXPECT_TRUE(store.contains("img_in.weight"));
  EXPECT_TRUE(store.contains("guidance_in.in_layer.weight"));
  EXPECT_EQ(store.source_of("img_in.weight"), dir + "/sdcpp.gguf");
  EXPECT_EQ(store.source_of("other"), dir + "/extra.safetensors");
  EXPECT_EQ(store.get("img_in.weight").data<float>()[3], 4.0f);
  EXPECT_THROW(store.add_file(dir + "/extra.safetensors"), Error);  // "other" twice
  EXPECT_THROW(store.rename([](const std::string& n) { return n == "other" ? "img_in.weight" : n; }), Error);
}

}  // namespace
}  // namespace flux
