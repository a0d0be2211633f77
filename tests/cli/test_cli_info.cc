// `fluxcpp info` end to end: the real binary on golden files, a model folder, a sharded set, and every kind of
// malformed file (written here): exit status 1 and exactly one stderr line naming the file.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace flux {
namespace {

using test::run_cli;

using CliRun = test::RunResult;

std::string with_length(const std::string& header) {
  std::string out(8, '\0');
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  return out + header;
}

TEST(CliInfo, GoldenFile) {
  const std::string path = test::golden_dir() + "/clip.safetensors";
  const CliRun r = run_cli({"info", path});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("input_ids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("I64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[3, 77, 32]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("overall: 1 file, 3 tensors"), std::string::npos) << r.out;

  const CliRun j = run_cli({"info", "--json", path});
  ASSERT_EQ(j.status, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["n_tensors"], 3);
  EXPECT_EQ(doc["dtypes"]["I64"], 1);
  EXPECT_EQ(doc["dtypes"]["F32"], 2);
  EXPECT_EQ(doc["bytes"], 3 * 77 * 8 + 3 * 77 * 32 * 4 + 3 * 32 * 4);
  EXPECT_EQ(doc["files"][0]["tensors"].size(), 3u);
}

TEST(CliInfo, ModelFolderAndMetadata) {
  const CliRun r = run_cli({"info", "--json", test::golden_dir() + "/models/FLUX.1-schnell"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["n_files"], 4);  // text_encoder, text_encoder_2, transformer, vae
  size_t sum = 0;
  for (const auto& f : doc["files"]) sum += f["n_tensors"].get<size_t>();
  EXPECT_EQ(doc["n_tensors"].get<size_t>(), sum);

  const std::string dir = test::temp_dir("cli-info");
  write_safetensors(dir + "/m.safetensors", {{"w", Tensor::zeros(DType::bf16, {2, 3})}}, {{"format", "pt"}});
  const CliRun m = run_cli({"info", dir + "/m.safetensors"});
  ASSERT_EQ(m.status, 0) << m.err;
  EXPECT_NE(m.out.find("__metadata__ format: pt"), std::string::npos) << m.out;
  EXPECT_NE(m.out.find("BF16"), std::string::npos) << m.out;
}

TEST(CliInfo, ShardedIndex) {
  const std::string dir = test::temp_dir("cli-info");
  write_safetensors(dir + "/s-1.safetensors", {{"a", Tensor::zeros(DType::f32, {4})}});
  write_safetensors(dir + "/s-2.safetensors", {{"b", Tensor::zeros(DType::f16, {4})}});
  std::ofstream(dir + "/s.safetensors.index.json")
      << R"({"weight_map": {"a": "s-1.safetensors", "b": "s-2.safetensors"}})";
  const CliRun r = run_cli({"info", "--json", dir + "/s.safetensors.index.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["n_files"], 2);
  EXPECT_EQ(doc["bytes"], 16 + 8);

  std::ofstream(dir + "/s.safetensors.index.json")
      << R"({"weight_map": {"a": "s-1.safetensors", "c": "s-2.safetensors"}})";
  const CliRun bad = run_cli({"info", dir});
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err.find("fluxcpp: error: " + dir + "/s.safetensors.index.json: "), 0u) << bad.err;
}

TEST(CliInfo, MalformedFiles) {
  const std::string t = R"("dtype": "F32", "shape": [1], "data_offsets": [0, 4])";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"short", "abc"},
      {"length_beyond", std::string("\xff\x00\x00\x00\x00\x00\x00\x00{}", 10)},
      {"huge_length", std::string("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10)},
      {"bad_json", with_length(R"({"w": {)")},
      {"not_object", with_length("[1]")},
      {"entry_not_object", with_length(R"({"w": 1})")},
      {"missing_dtype", with_length(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})") + std::string(4, '\0')},
      {"unknown_dtype",
       with_length(R"({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}})") + std::string(4, '\0')},
      {"negative_dim",
       with_length(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})") + std::string(4, '\0')},
      {"five_dims",
       with_length(R"({"w": {"dtype": "U8", "shape": [1,1,1,1,1], "data_offsets": [0, 1]}})") + std::string(1, '\0')},
      {"overflow",
       with_length(R"({"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})") +
           std::string(8, '\0')},
      {"beyond_data", with_length("{\"w\": {" + t + "}}")},
      {"size_mismatch",
       with_length(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})") + std::string(8, '\0')},
      {"reversed",
       with_length(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})") + std::string(8, '\0')},
      {"overlap", with_length("{\"a\": {" + t + "}, \"b\": {" + t + "}}") + std::string(4, '\0')},
      {"duplicate",
       with_length(
           R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})") +
           std::string(2, '\0')},
      {"bad_metadata", with_length(R"({"__metadata__": {"k": 1}})")},
  };
  const std::string dir = test::temp_dir("cli-info-bad");
  for (const auto& [name, bytes] : cases) {
    const std::string path = dir + "/" + name + ".safetensors";
    std::ofstream(path, std::ios::binary) << bytes;
    const CliRun r = run_cli({"info", path});
    EXPECT_EQ(r.status, 1) << name << ": " << r.err;
    EXPECT_EQ(r.err.find("fluxcpp: error: " + path + ": "), 0u) << name << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << name << ": " << r.err;
    EXPECT_EQ(r.out, "") << name;
  }
  const CliRun absent = run_cli({"info", dir + "/absent.safetensors"});
  EXPECT_EQ(absent.status, 1);
  EXPECT_EQ(absent.err.find("fluxcpp: error: " + dir + "/absent.safetensors: "), 0u) << absent.err;
  const CliRun empty_dir = run_cli({"info", test::temp_dir("cli-info-empty")});
  EXPECT_EQ(empty_dir.status, 1);
  EXPECT_EQ(std::count(empty_dir.err.begin(), empty_dir.err.end(), '\n'), 1) << empty_dir.err;
}

}  // namespace
}  // namespace flux
