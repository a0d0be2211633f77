// make-test-model at full size without writing 30 GB: the full-size tables bound by the real loaders through
// sparse files (headers real, data holes), the city96 / llama.cpp GGUF type rules on the real shapes, the
// streamed value generator and the random Q4_K blocks checked statistically, and every --type set generating a
// finite image at tiny size (the same table code).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/weight_store.h"
#include "kernels/matmul.h"
#include "models/autoencoder.h"
#include "models/clip_text.h"
#include "models/flux.h"
#include "models/t5_encoder.h"
#include "pipeline/pipeline.h"
#include "pipeline/test_model.h"
#include "pipeline/test_model_write.h"
#include "tensor/convert.h"
#include "test_util.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

TestModelOptions full_options(TestModelType type) {
  TestModelOptions o;
  o.size = TestModelSize::full;
  o.layout = TestModelLayout::single_file;
  o.type = type;
  return o;
}

// A safetensors file with the planned header and a hole for the data (no disk blocks, reads as zeros).
void write_sparse_safetensors(const std::string& path, const TestModelFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const auto& [name, shape, dtype] : file.tensors) {
    const uint64_t n = static_cast<uint64_t>(shape.numel()) * dtype_size(dtype);
    header[name] = {
        {"dtype", safetensors_dtype_name(dtype)}, {"shape", shape.to_vector()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = text.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out << text;
  }
  fs::resize_file(path, 8 + text.size() + offset);
}

uint64_t numel_of(const TestModelFile& f) {
  uint64_t n = 0;
  for (const auto& [name, shape, dtype] : f.tensors) n += static_cast<uint64_t>(shape.numel());
  return n;
}

const TestModelFile& file_named(const std::vector<TestModelFile>& files, const std::string& path) {
  for (const TestModelFile& f : files)
    if (f.path == path) return f;
  ADD_FAILURE() << "no file " << path;
  static const TestModelFile none;
  return none;
}

TEST(FullSizeModel, RealLoadersBindEveryPlannedTensor) {
  // fp8 binds mixed dtypes; the bf16 set has the same names and shapes (checked below).
  const std::string dir = test::temp_dir("full-size-sparse");
  for (TestModelType type : {TestModelType::fp8}) {
    const std::vector<TestModelFile> files = plan_test_model(full_options(type));
    ASSERT_EQ(files.size(), 4u);
    for (const TestModelFile& f : files) write_sparse_safetensors(dir + "/" + f.path, f);
    const kernels::WeightMode saved = kernels::default_weight_mode();
    kernels::set_default_weight_mode(kernels::WeightMode::per_call);  // keep the holes unread
    const std::string flux_file =
        type == TestModelType::bf16 ? "flux1-schnell.safetensors" : "flux1-schnell-fp8-e4m3fn.safetensors";
    const std::string t5_file = type == TestModelType::bf16 ? "t5xxl_fp16.safetensors" : "t5xxl_fp8_e4m3fn.safetensors";

    WeightStore flux_store = WeightStore::open(dir + "/" + flux_file);
    const FluxParams p = FluxParams::resolve(flux_store, "");  // from shapes, as for the real download
    EXPECT_EQ(p.hidden_size, 3072);
    EXPECT_EQ(p.num_heads, 24);
    EXPECT_EQ(p.depth, 19);
    EXPECT_EQ(p.depth_single_blocks, 38);
    EXPECT_EQ(p.context_in_dim, 4096);
    EXPECT_EQ(p.vec_in_dim, 768);
    EXPECT_FALSE(p.guidance_embed);
    EXPECT_NO_THROW(Flux::load(flux_store, p, kernels::WeightMode::per_call));
    // FLUX.1-schnell: 11,891,178,560 parameters (flux1-schnell.safetensors, 23,782,506,688 bytes, is twice that
    // plus a 149 kB header; dev adds guidance_in's 10,229,760). T5-XXL's encoder: 4,762,310,656.
    EXPECT_EQ(numel_of(file_named(files, flux_file)), 11891178560ull);
    EXPECT_EQ(numel_of(file_named(files, t5_file)), 4762310656ull);

    WeightStore t5_store = WeightStore::open(dir + "/" + t5_file);
    const T5Config c = T5Config::resolve(t5_store, "");
    EXPECT_EQ(c.d_model, 4096);
    EXPECT_EQ(c.num_heads, 64);
    EXPECT_EQ(c.d_ff, 10240);
    EXPECT_EQ(c.num_layers, 24);
    EXPECT_NO_THROW(T5Encoder::load(t5_store, c));

    WeightStore clip_store = WeightStore::open(dir + "/clip_l.safetensors");
    const ClipTextConfig cc = ClipTextConfig::resolve(clip_store, "");
    EXPECT_EQ(cc.hidden_size, 768);
    EXPECT_EQ(cc.num_hidden_layers, 12);
    EXPECT_NO_THROW(ClipTextModel::load(clip_store, cc));

    WeightStore ae_store = WeightStore::open(dir + "/ae.safetensors");
    const AutoEncoderParams ap = AutoEncoderParams::resolve(ae_store, "");
    EXPECT_EQ(ap.ch, 128);
    EXPECT_EQ(ap.num_res_blocks, 2);
    EXPECT_NO_THROW(AutoEncoder::load(ae_store, ap));
    kernels::set_default_weight_mode(saved);
    for (const TestModelFile& f : files) fs::remove(dir + "/" + f.path);
  }
}

TEST(FullSizeModel, StoredTypesFollowTheDownloads) {
  // The same tensors in bf16 and fp8, file by file (names differ only in the file names).
  const std::vector<TestModelFile> a = plan_test_model(full_options(TestModelType::bf16)),
                                   b = plan_test_model(full_options(TestModelType::fp8));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].tensors.size(), b[i].tensors.size()) << a[i].path;
    for (size_t j = 0; j < a[i].tensors.size(); ++j) {
      EXPECT_EQ(std::get<0>(a[i].tensors[j]), std::get<0>(b[i].tensors[j]));
      EXPECT_EQ(std::get<1>(a[i].tensors[j]), std::get<1>(b[i].tensors[j]));
    }
  }
  // bf16: BF16 transformer, F16 T5 and CLIP, F32 VAE.
  for (const TestModelFile& f : plan_test_model(full_options(TestModelType::bf16))) {
    const DType want = f.path.starts_with("flux1-") ? DType::bf16
                       : f.path == "ae.safetensors" ? DType::f32
                                                    : DType::f16;
    for (const auto& [name, shape, dtype] : f.tensors) ASSERT_EQ(dtype, want) << f.path << " " << name;
  }
  // fp8: the block matrices and T5 layer matrices in F8_E4M3, nothing else.
  const std::vector<TestModelFile> fp8 = plan_test_model(full_options(TestModelType::fp8));
  int flux_f8 = 0, t5_f8 = 0;
  for (const auto& [name, shape, dtype] : file_named(fp8, "flux1-schnell-fp8-e4m3fn.safetensors").tensors) {
    flux_f8 += dtype == DType::f8_e4m3;
    if (name == "img_in.weight" || name.ends_with(".bias")) {
      EXPECT_EQ(dtype, DType::bf16) << name;
    }
  }
  for (const auto& [name, shape, dtype] : file_named(fp8, "t5xxl_fp8_e4m3fn.safetensors").tensors) {
    t5_f8 += dtype == DType::f8_e4m3;
    if (name == "shared.weight" || name.find("relative_attention_bias") != std::string::npos) {
      EXPECT_EQ(dtype, DType::f16) << name;
    }
  }
  EXPECT_EQ(flux_f8, 19 * 10 + 38 * 3);  // per double block 2 x (mod, qkv, proj, mlp.0, mlp.2); single: 3
  EXPECT_EQ(t5_f8, 24 * 7);              // q, k, v, o, wi_0, wi_1, wo

  // q4_K (city96 Q4_K_S): every block matrix Q4_K (real rows are whole 256-blocks), 4 F16 embedder outputs.
  const std::vector<TestModelFile> q = plan_test_model(full_options(TestModelType::q4_K));
  std::map<DType, int> counts;
  for (const auto& [name, shape, dtype] : file_named(q, "flux1-schnell-Q4_K_S.gguf").tensors) ++counts[dtype];
  EXPECT_EQ(counts[DType::q4_K], 19 * 10 + 38 * 3);
  EXPECT_EQ(counts[DType::f16], 4);
  std::map<DType, int> t5_counts;
  const TestModelFile& t5 = file_named(q, "t5-v1_1-xxl-encoder-Q4_K_M.gguf");
  for (const auto& [name, shape, dtype] : t5.tensors) ++t5_counts[dtype];
  EXPECT_EQ(t5_counts[DType::q4_K], 24 * 7 + 1);     // + token_embd
  EXPECT_EQ(t5_counts[DType::f32], 24 * 2 + 1 + 1);  // norms, output_norm, attn_rel_b of block 0
  EXPECT_TRUE(std::is_sorted(t5.tensors.begin(), t5.tensors.end(),
                             [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); }));
  EXPECT_EQ(std::get<0>(t5.tensors.front()), "enc.blk.0.attn_k.weight");
}

TEST(FullSizeModel, StreamedValuesAreRowAddressableAndNormal) {
  const test_model::Params params = {{"w", Shape{64, 4096}, 0.02f}, {"c", Shape{16}, 0.0f, 1.0f}};
  const auto values = test_model::streamed_values(params, 5);
  std::vector<float> all(64 * 4096), part(10 * 4096);
  values->rows(0, 0, 64, all.data());
  values->rows(0, 20, 30, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + 20 * 4096));
  double sum = 0, sq = 0;
  for (float x : all) sum += x, sq += double(x) * x;
  const double mean = sum / all.size(), std = std::sqrt(sq / all.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.0005);
  EXPECT_NEAR(std, 0.02, 0.0004);
  std::vector<float> c(16);
  values->rows(1, 0, 16, c.data());
  EXPECT_EQ(c, std::vector<float>(16, 1.0f));
  // Another seed, other values.
  std::vector<float> other(4096);
  test_model::streamed_values(params, 6)->rows(0, 0, 1, other.data());
  EXPECT_NE(other[0], all[0]);
}

TEST(FullSizeModel, F8E4M3RoundsToNearestEvenAndSaturates) {
  for (int v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) continue;  // NaN
    const float f = f8e4m3_to_f32(static_cast<uint8_t>(v));
    EXPECT_EQ(test_model::f32_to_f8e4m3(f), v == 0x80 ? 0x80 : v) << v;
  }
  EXPECT_EQ(test_model::f32_to_f8e4m3(1.0625f), 0x38);  // 1 + 1/16: tie between 1.0 (0x38) and 1.125 -> even
  EXPECT_EQ(test_model::f32_to_f8e4m3(1.1875f), 0x3a);  // tie between 1.125 (odd) and 1.25 -> 1.25
  EXPECT_EQ(test_model::f32_to_f8e4m3(1000.0f), 0x7e);  // 448
  EXPECT_EQ(test_model::f32_to_f8e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(test_model::f32_to_f8e4m3(0.001f), 0x01);  // subnormal 2^-9 = 0.00195: 0.001 rounds up
}

// Every --type set at tiny size: loads and makes a finite image; Q4_K weights have their parameter's std.
TEST(FullSizeModel, EveryTypeGeneratesAtTinySize) {
  for (TestModelType type : {TestModelType::bf16, TestModelType::fp8, TestModelType::q8_0, TestModelType::q4_K}) {
    const std::string dir = test::temp_dir("typed-model");
    TestModelOptions o;
    o.layout = TestModelLayout::single_file;
    o.type = type;
    o.tokenizers = test::tokenizer_dir();
    o.seed = 3;
    make_test_model(dir, o);
    ModelPaths paths;
    paths.model_dir = dir;
    auto pipeline = Pipeline::load(paths, {});
    GenerateRequest r;
    r.prompt = "a red cube";
    r.width = r.height = 32;
    r.steps = 2;
    const GenerateResult result = pipeline->run(r, {}, {});
    EXPECT_EQ(result.image.pixels.size(), 32u * 32 * 3);
    int distinct = 0;
    for (size_t i = 1; i < result.image.pixels.size(); ++i)
      distinct += result.image.pixels[i] != result.image.pixels[0];
    EXPECT_GT(distinct, 100) << "a flat image: NaN or saturated activations";
    if (type == TestModelType::q4_K) {
      WeightStore store = WeightStore::open(dir + "/flux1-schnell-Q4_K_S.gguf");
      const Tensor w = store.get("double_blocks.0.img_mlp.2.weight");  // [64, 256]: the one Q4_K tensor kind
      ASSERT_EQ(w.dtype(), DType::q4_K);
      const Tensor f = store.require_f32("double_blocks.0.img_mlp.2.weight", {});
      double sum = 0, sq = 0;
      const float* x = f.data<float>();
      for (int64_t i = 0; i < f.numel(); ++i) sum += x[i], sq += double(x[i]) * x[i];
      const double mean = sum / f.numel(), std = std::sqrt(sq / f.numel() - mean * mean);
      EXPECT_NEAR(mean, 0.0, 0.002);
      EXPECT_NEAR(std, 0.5 / std::sqrt(256.0), 0.002);  // linear(): 0.5 / sqrt(in)
    }
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace flux
