// `fluxcpp info FILE.gguf` end to end: the real binary on golden GGUF files (text, --summary, --json), KV arrays
// summarised, and malformed files (exit status 1, one stderr line naming the file and the problem).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "io/gguf_test_writer.h"
#include "test_util.h"

namespace flux {
namespace {

using test::run_cli;

std::string golden(const std::string& file) { return test::golden_dir() + "/gguf/" + file; }

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(CliInfoGguf, GoldenFile) {
  const std::string path = golden("city96-flux1-schnell-Q4_K_S.gguf");
  const test::RunResult r = run_cli({"info", path});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(has(r.out, path + " (GGUF v3, alignment 32, data at byte 5536, 3 KV pairs)")) << r.out;
  EXPECT_TRUE(has(r.out, "kv general.architecture (string): flux")) << r.out;
  EXPECT_TRUE(has(r.out, "kv general.file_type (u32): 14")) << r.out;
  // A Q4_K weight: torch shape (ne reversed) and bytes (64 rows of one 144-byte block).
  const size_t line = r.out.find("double_blocks.0.img_mlp.2.weight");
  ASSERT_NE(line, std::string::npos) << r.out;
  const std::string text = r.out.substr(line, r.out.find('\n', line) - line);
  EXPECT_TRUE(has(text, "Q4_K")) << text;
  EXPECT_TRUE(has(text, "[64, 256]")) << text;
  EXPECT_TRUE(has(text, " 9216")) << text;
  EXPECT_TRUE(has(r.out, "overall: 1 file, 80 tensors")) << r.out;
  EXPECT_TRUE(has(r.out, "F16 x26, F32 x50, Q4_K x4")) << r.out;

  const test::RunResult s = run_cli({"info", "--summary", golden("sdcpp-flux1-schnell-q8_0.gguf")});
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_TRUE(has(s.out, "(GGUF v3, alignment 32, data at byte 5408, 0 KV pairs)")) << s.out;
  EXPECT_FALSE(has(s.out, "double_blocks.0")) << s.out;
  EXPECT_TRUE(has(s.out, "total: 80 tensors, ")) << s.out;
  EXPECT_TRUE(has(s.out, "F32 x54, Q8_0 x26")) << s.out;
}

TEST(CliInfoGguf, Json) {
  const test::RunResult r = run_cli({"info", "--json", golden("zoo-sdcpp-q6_K.gguf")});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["n_files"], 1);
  EXPECT_EQ(doc["n_tensors"], 5);
  EXPECT_EQ(doc["dtypes"]["Q6_K"], 4);
  EXPECT_EQ(doc["dtypes"]["F32"], 1);
  const auto& f = doc["files"][0];
  EXPECT_EQ(f["format"], "gguf");
  EXPECT_EQ(f["gguf"]["version"], 3);
  EXPECT_EQ(f["gguf"]["alignment"], 32);
  EXPECT_TRUE(f["kv"].empty());
  const auto& t = f["tensors"][1];  // zoo.edge.weight [6, 256]: 6 rows of one 210-byte block
  EXPECT_EQ(t["name"], "zoo.edge.weight");
  EXPECT_EQ(t["dtype"], "Q6_K");
  EXPECT_EQ(t["shape"], nlohmann::json({6, 256}));
  EXPECT_EQ(t["ne"], nlohmann::json({256, 6}));
  EXPECT_EQ(t["bytes"], 6 * 210);
  EXPECT_EQ(t["offset"], 288 + 1024);
}

TEST(CliInfoGguf, ArraysSummarised) {
  test::GgufWriter w;
  std::vector<GgufValue> tokens;
  for (int i = 0; i < 1000; ++i) tokens.push_back(GgufValue{std::to_string(i).insert(0, 1, 't')});
  w.add_kv("tokenizer.ggml.tokens", test::gguf_array(GgufType::string, tokens));
  w.add_kv("tokenizer.chat_template", GgufValue{std::string(500, 'x')});
  w.add_kv("general.alignment", GgufValue{uint32_t{64}});
  w.alignment = 64;
  w.add_tensor("w", Tensor::zeros(DType::bf16, {2, 3}));
  const std::string path = test::temp_dir("cli-gguf") + "/t.gguf";
  w.write(path);
  const test::RunResult r = run_cli({"info", path});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(
      has(r.out, "kv tokenizer.ggml.tokens (array of string): [string x 1000: \"t0\", \"t1\", \"t2\", \"t3\", ...]"))
      << r.out;
  EXPECT_TRUE(has(r.out, "kv tokenizer.chat_template (string): (500 chars)")) << r.out;
  EXPECT_TRUE(has(r.out, "alignment 64")) << r.out;
  EXPECT_TRUE(has(r.out, "BF16")) << r.out;

  const test::RunResult j = run_cli({"info", "--json", path});
  ASSERT_EQ(j.status, 0) << j.err;
  const auto kv = nlohmann::json::parse(j.out)["files"][0]["kv"];
  EXPECT_EQ(kv["tokenizer.ggml.tokens"]["type"], "array of string");
  EXPECT_EQ(kv["tokenizer.ggml.tokens"]["length"], 1000);
  EXPECT_EQ(kv["general.alignment"]["value"], "64");
}

TEST(CliInfoGguf, MalformedFilesFailWithOneLine) {
  const std::string dir = test::temp_dir("cli-gguf-bad");
  const std::string good = test::read_file(golden("zoo-sdcpp-q4_0.gguf"));
  test::GgufWriter iq;
  iq.add_tensor("w.iq4", 20, {32, 1}, std::string(18, '\0'));
  const std::pair<std::string, std::string> cases[] = {
      {good.substr(0, good.size() - 7), "beyond the data section"},
      {good.substr(0, 270), "tensor 'zoo.wide.weight': ne: file truncated"},
      {iq.bytes(), "type IQ4_NL (20) is not supported"},
  };
  int i = 0;
  for (const auto& [bytes, message] : cases) {
    const std::string path = dir + "/bad" + std::to_string(i++) + ".gguf";
    std::ofstream(path, std::ios::binary) << bytes;
    const test::RunResult r = run_cli({"info", path});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.err.find("fluxcpp: error: " + path + ": "), 0u) << r.err;
    EXPECT_TRUE(has(r.err, message)) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace flux
