// `fluxcpp quantize` end to end: the real binary reproduces the golden GGUF files of stable-diffusion.cpp
// (zoo-sdcpp-* for all 12 types, sdcpp-flux1-schnell-q8_0, the k-quant tensors of sdcpp-*-kmix) and of gguf-py
// with city96's rules (city96-flux1-schnell-{Q8_0,Q4_0,Q4_K_S}) from their f32 sources, byte for byte per tensor
// and as whole files; the legacy-type tensors of zoo-ggufpy-* with --quantizer ref; writes T5 encoders in llama.cpp's
// layout; and fails with one clear line (exit 1) on bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_util.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace flux {
namespace {

test::RunResult run_cli(std::vector<std::string> args) {  // `fluxcpp quantize args...`
  args.insert(args.begin(), "quantize");
  return test::run_cli(args);
}

std::string golden_gguf(const std::string& file) { return test::golden_dir() + "/gguf/" + file; }
std::string flux_source() { return test::golden_dir() + "/weights/flux1-schnell.safetensors"; }
bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Every tensor of `want` is in `got` with the same type, shape and bytes; same names in the same order.
void expect_same_tensors(const std::string& got_path, const std::string& want_path) {
  SCOPED_TRACE(got_path + " vs " + want_path);
  const GgufFile got = GgufFile::open(got_path), want = GgufFile::open(want_path);
  ASSERT_EQ(got.tensors().size(), want.tensors().size());
  for (size_t i = 0; i < want.tensors().size(); ++i) {
    const GgufTensorInfo &g = got.tensors()[i], &w = want.tensors()[i];
    EXPECT_EQ(g.name, w.name);
    EXPECT_EQ(ggml_type_name(g.ggml_type), std::string(ggml_type_name(w.ggml_type))) << w.name;
    EXPECT_EQ(g.ne, w.ne) << w.name;
    ASSERT_EQ(g.nbytes, w.nbytes) << w.name;
    EXPECT_EQ(std::memcmp(got.tensor(g).raw(), want.tensor(w).raw(), w.nbytes), 0) << w.name << " bytes differ";
  }
}

void expect_same_file(const std::string& got_path, const std::string& want_path) {
  EXPECT_TRUE(test::read_file(got_path) == test::read_file(want_path)) << got_path << " vs " << want_path;
}

// The done-when: zoo.safetensors quantized with sd.cpp's rules and search quantizer gives sd-cli's files.
TEST(CliQuantize, ZooSdcppAllTypes) {
  const std::string dir = test::temp_dir("quantize_zoo");
  for (const char* type :
       {"f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "q6_K", "q5_K", "q4_K", "q3_K", "q2_K"}) {
    SCOPED_TRACE(type);
    const std::string out = dir + "/zoo-" + type + ".gguf";
    const test::RunResult r = run_cli(
        {test::golden_dir() + "/gguf/zoo.safetensors", out, "--type", type, "--layout", "sdcpp", "--any-tensors"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has(r.err, "[5/5] zoo.wide.weight [2, 768] f32 -> ")) << r.err;
    const std::string want = golden_gguf(std::string("zoo-sdcpp-") + type + ".gguf");
    expect_same_tensors(out, want);
    expect_same_file(out, want);
  }
}

// gguf-py's choice, the reference quantizers: the zoo-ggufpy-* tensors for every legacy type.
TEST(CliQuantize, ZooGgufPyReferenceQuantizer) {
  const std::string dir = test::temp_dir("quantize_zoo_ref");
  for (const std::string type : {"F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0"}) {
    SCOPED_TRACE(type);
    std::string lower = type;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char c) { return static_cast<char>(std::tolower(c)); });
    const std::string out = dir + "/zoo-" + type + ".gguf";
    const test::RunResult r = run_cli(
        {test::golden_dir() + "/gguf/zoo.safetensors", out, "--type", lower, "--quantizer", "ref", "--any-tensors"});
    ASSERT_EQ(r.status, 0) << r.err;
    expect_same_tensors(out, golden_gguf("zoo-ggufpy-" + type + ".gguf"));
  }
}

TEST(CliQuantize, FluxCity96) {
  const std::string dir = test::temp_dir("quantize_city96");
  struct Case {
    std::vector<std::string> args;
    const char* golden;
  };
  const Case cases[] = {
      {{"--type", "q8_0", "--layout", "city96", "--quantizer", "ref"}, "city96-flux1-schnell-Q8_0.gguf"},
      {{"--type", "q4_0", "--quantizer", "ref"}, "city96-flux1-schnell-Q4_0.gguf"},
      {{"--type", "q4_K"}, "city96-flux1-schnell-Q4_K_S.gguf"},  // search by default; 26 F16 fallbacks
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.golden);
    const std::string out = dir + "/" + c.golden;
    std::vector<std::string> args = {flux_source(), out};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const test::RunResult r = run_cli(args);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 81) << r.err;  // a headline + one line per tensor
    EXPECT_TRUE(has(r.err, "[80/80] vector_in.out_layer.weight [64, 64] f32 -> f16")) << r.err;
    EXPECT_TRUE(has(r.out, "wrote " + out + ": 80 tensors")) << r.out;
    const GgufFile g = GgufFile::open(out);
    ASSERT_EQ(g.kv().size(), 3u);
    EXPECT_EQ(*g.kv()[0].value.as_string(), "flux");
    expect_same_tensors(out, golden_gguf(c.golden));
    expect_same_file(out, golden_gguf(c.golden));
  }
}

// A ComfyUI-style checkpoint ("model.diffusion_model." prefix, bf16) gives bare names; F32 tensors are widened.
TEST(CliQuantize, PrefixedBf16Source) {
  const std::string dir = test::temp_dir("quantize_prefixed");
  const SafetensorsFile src = SafetensorsFile::open(flux_source());
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const SafetensorsEntry& e : src.entries())
    tensors.emplace_back("model.diffusion_model." + e.name, src.tensor(e).to(DType::bf16));
  write_safetensors(dir + "/comfy.safetensors", tensors);
  const test::RunResult r = run_cli({dir + "/comfy.safetensors", dir + "/out.gguf", "--type", "q8_0"});
  ASSERT_EQ(r.status, 0) << r.err;
  const GgufFile g = GgufFile::open(dir + "/out.gguf");
  ASSERT_EQ(g.tensors().size(), 80u);
  const GgufTensorInfo* bias = g.find("img_in.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->dtype, DType::f32);
  const Tensor want = src.tensor("img_in.bias").to(DType::bf16).to(DType::f32);
  EXPECT_EQ(std::memcmp(g.tensor(*bias).raw(), want.raw(), want.nbytes()), 0);
  EXPECT_EQ(g.find("double_blocks.0.img_attn.qkv.weight")->dtype, DType::q8_0);

  // sdcpp keeps the source type (bf16) where it does not convert.
  const test::RunResult s =
      run_cli({dir + "/comfy.safetensors", dir + "/sd.gguf", "--type", "q8_0", "--layout", "sdcpp"});
  ASSERT_EQ(s.status, 0) << s.err;
  const GgufFile sd = GgufFile::open(dir + "/sd.gguf");
  EXPECT_EQ(sd.find("img_in.bias")->dtype, DType::bf16);
  EXPECT_EQ(sd.find("img_in.weight")->dtype, DType::bf16);
  EXPECT_EQ(sd.find("double_blocks.0.img_attn.qkv.weight")->dtype, DType::q8_0);
}

TEST(CliQuantize, FluxSdcpp) {
  const std::string dir = test::temp_dir("quantize_sdcpp");
  const test::RunResult r = run_cli({flux_source(), dir + "/q8_0.gguf", "--type", "q8_0", "--layout", "sdcpp"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "(sdcpp layout, search quantizer)")) << r.err;
  expect_same_tensors(dir + "/q8_0.gguf", golden_gguf("sdcpp-flux1-schnell-q8_0.gguf"));
  expect_same_file(dir + "/q8_0.gguf", golden_gguf("sdcpp-flux1-schnell-q8_0.gguf"));

  // The kmix file's four k-quant tensors (its --tensor-type-rules) equal the same tensors of whole-file runs.
  const GgufFile kmix = GgufFile::open(golden_gguf("sdcpp-flux1-schnell-kmix.gguf"));
  int n_checked = 0;
  for (const GgufTensorInfo& want : kmix.tensors()) {
    if (!is_quantized(want.dtype)) continue;
    const std::string type = dtype_name(want.dtype), out = dir + "/" + type + ".gguf";
    const test::RunResult k = run_cli({flux_source(), out, "--type", type, "--layout", "sdcpp"});
    ASSERT_EQ(k.status, 0) << k.err;
    const GgufFile g = GgufFile::open(out);
    const GgufTensorInfo* got = g.find(want.name);
    ASSERT_NE(got, nullptr) << want.name;
    ASSERT_EQ(got->dtype, want.dtype) << want.name;
    ASSERT_EQ(got->nbytes, want.nbytes) << want.name;
    EXPECT_EQ(std::memcmp(g.tensor(*got).raw(), kmix.tensor(want).raw(), want.nbytes), 0) << want.name;
    ++n_checked;
  }
  EXPECT_EQ(n_checked, 4);
}

TEST(CliQuantize, T5LlamaCppLayout) {
  const std::string dir = test::temp_dir("quantize_t5");
  const std::string source = test::golden_dir() + "/weights/t5xxl.safetensors";
  const test::RunResult r = run_cli({source, dir + "/t5.gguf", "--type", "q8_0"});
  ASSERT_EQ(r.status, 0) << r.err;
  const GgufFile g = GgufFile::open(dir + "/t5.gguf");
  EXPECT_EQ(*g.find_kv("general.architecture")->as_string(), "t5encoder");
  EXPECT_EQ(g.find_kv("general.file_type")->as_int(), 7);
  EXPECT_EQ(g.find_kv("general.quantization_version")->as_int(), 2);
  EXPECT_EQ(g.find_kv("t5encoder.embedding_length")->as_int(), 32);
  EXPECT_EQ(g.find_kv("t5encoder.feed_forward_length")->as_int(), 64);
  EXPECT_EQ(g.find_kv("t5encoder.block_count")->as_int(), 2);
  EXPECT_EQ(g.find_kv("t5encoder.attention.head_count")->as_int(), 4);
  EXPECT_EQ(g.find_kv("t5encoder.attention.key_length")->as_int(), 16);
  EXPECT_EQ(g.find_kv("t5encoder.attention.relative_buckets_count")->as_int(), 32);
  EXPECT_EQ(g.find_kv("t5encoder.attention.layer_norm_rms_epsilon")->as_float(), 1e-6f);

  const SafetensorsFile src = SafetensorsFile::open(source);
  const std::pair<const char*, const char*> names[] = {
      {"token_embd.weight", "shared.weight"},
      {"enc.output_norm.weight", "encoder.final_layer_norm.weight"},
      {"enc.blk.1.ffn_down.weight", "encoder.block.1.layer.1.DenseReluDense.wo.weight"},
      {"enc.blk.0.attn_rel_b.weight", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"},
      {"enc.blk.0.attn_norm.weight", "encoder.block.0.layer.0.layer_norm.weight"},
  };
  EXPECT_EQ(g.tensors().size(), src.entries().size());
  for (const auto& [gguf_name, hf_name] : names) {
    const GgufTensorInfo* t = g.find(gguf_name);
    ASSERT_NE(t, nullptr) << gguf_name;
    const Tensor want = src.tensor(hf_name);
    EXPECT_EQ(t->shape, want.shape()) << gguf_name;
    const bool stays_f32 = want.ndim() == 1 || std::string(gguf_name).ends_with("attn_rel_b.weight");
    EXPECT_EQ(t->dtype, stays_f32 ? DType::f32 : DType::q8_0) << gguf_name;
    EXPECT_CLOSE(g.tensor(*t).to(DType::f32), want, stays_f32 ? 0.0 : 0.01);
  }
}

// One "fluxcpp: error: ..." line, exit status 1, and no OUT left behind.
void expect_error(const std::vector<std::string>& args, const std::string& message) {
  SCOPED_TRACE(message);
  const test::RunResult r = run_cli(args);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err.rfind("fluxcpp: error: ", 0), 0u) << r.err;
  EXPECT_TRUE(has(r.err, message)) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(args[1])) << args[1];
}

TEST(CliQuantize, Errors) {
  const std::string dir = test::temp_dir("quantize_errors");
  const std::string out = dir + "/out.gguf", zoo = test::golden_dir() + "/gguf/zoo.safetensors";
  expect_error({flux_source(), out, "--type", "q7_0"},
               "--type: expected one of q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K, q3_K, q2_K, f16, bf16; "
               "got 'q7_0'");
  expect_error({zoo, out, "--type", "q8_0"},
               zoo + ": not a FLUX transformer (no double_blocks.0.img_attn.qkv.weight) nor a T5 encoder");
  expect_error({flux_source(), "/nonexistent-dir-fluxcpp/out.gguf", "--type", "q8_0"},
               "/nonexistent-dir-fluxcpp/out.gguf: cannot create the file");
  expect_error({golden_gguf("sdcpp-flux1-schnell-q8_0.gguf"), out, "--type", "q4_0"},
               "tensor 'double_blocks.0.img_attn.proj.weight' is already quantized (q8_0)");
  expect_error({flux_source(), out, "--type", "q4_K", "--quantizer", "ref"}, "--quantizer ref: ");
  expect_error({flux_source(), out, "--type", "q8_0", "--layout", "diffusers"}, "--layout: expected city96 or sdcpp");
  expect_error({test::golden_dir() + "/models/FLUX.1-schnell/transformer", out, "--type", "q8_0"},
               "diffusers FluxTransformer2DModel names");
}

}  // namespace
}  // namespace flux
