// `fluxcpp tokenize` end to end: the real binary on single prompts and on a --jsonl file of every reference
// case; the printed ids must equal shared/tokenizers/reference_cases.jsonl.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace flux {
namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct CliResult {
  int status = -1;
  std::string out;
};

CliResult run_cli(const std::string& args) {
  const std::string cmd = std::string(FLUX_CLI_PATH) + " tokenize " + args + " 2>&1";
  CliResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<nlohmann::json> reference_cases() {
  std::ifstream in(test::tokenizer_dir() + "/reference_cases.jsonl");
  std::vector<nlohmann::json> cases;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) cases.push_back(nlohmann::json::parse(line));
  return cases;
}

void expect_matches(const nlohmann::json& got, const nlohmann::json& want, int max_length) {
  EXPECT_EQ(got["clip_ids"], want["clip_ids"]);
  EXPECT_EQ(got["t5_ids"], want["t5_ids_" + std::to_string(max_length)]);
  EXPECT_EQ(got["clip_untruncated_len"], want["clip_untruncated_len"]);
  EXPECT_EQ(got["t5_untruncated_len"], want["t5_untruncated_len"]);
  EXPECT_EQ(got["clip_pool_index"], want["clip_pool_index"]);
  EXPECT_EQ(got["truncated"].get<bool>(),
            want["clip_untruncated_len"].get<int>() > 77 || want["t5_untruncated_len"].get<int>() > max_length);
}

TEST(CliTokenize, SinglePrompts) {
  const auto cases = reference_cases();
  ASSERT_EQ(cases.size(), 62u);
  const std::string dir = shell_quote(test::tokenizer_dir());
  // Each run loads both tokenizers (~0.2 s): a few cases that matter (empty prompt, special tokens, T5-256
  // truncated but not T5-512); the --jsonl test covers every case.
  for (const auto& [index, max_length] :
       {std::pair{6, 512}, std::pair{58, 256}, std::pair{60, 256}, std::pair{60, 512}}) {
    SCOPED_TRACE("case " + std::to_string(index) + ", max_length " + std::to_string(max_length));
    const std::string text = cases[index]["text"];
    const CliResult r =
        run_cli("--tokenizers " + dir + " --max-length " + std::to_string(max_length) + " " + shell_quote(text));
    ASSERT_EQ(r.status, 0) << r.out;
    expect_matches(nlohmann::json::parse(r.out), cases[index], max_length);
  }
  const CliResult r = run_cli("--tokenizers " + dir + " " + shell_quote(cases[1]["text"]));  // default --max-length 256
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["t5_ids"].size(), 256u);
}

TEST(CliTokenize, JsonlEveryReferenceCase) {
  const auto cases = reference_cases();
  const std::string path = test::temp_dir("cli-tokenize") + "/prompts.jsonl";
  {
    std::ofstream out(path);
    for (const auto& c : cases) out << nlohmann::json{{"text", c["text"]}}.dump() << "\n";
  }
  const CliResult r =
      run_cli("--tokenizers " + shell_quote(test::tokenizer_dir()) + " --max-length 512 --jsonl " + shell_quote(path));
  ASSERT_EQ(r.status, 0) << r.out;
  std::istringstream lines(r.out);
  std::string line;
  size_t i = 0;
  for (; std::getline(lines, line); ++i) {
    ASSERT_LT(i, cases.size());
    SCOPED_TRACE("case " + std::to_string(i));
    expect_matches(nlohmann::json::parse(line), cases[i], 512);
  }
  EXPECT_EQ(i, cases.size());
}

TEST(CliTokenize, ErrorsAreClear) {
  CliResult r = run_cli("--tokenizers /nonexistent/fluxcpp 'a cat'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("/nonexistent/fluxcpp: not a directory"), std::string::npos) << r.out;
  r = run_cli("--tokenizers " + shell_quote(test::tokenizer_dir()));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("expected either TEXT or --jsonl FILE (got neither)"), std::string::npos) << r.out;
  const std::string bad = test::temp_dir("cli-tokenize-bad") + "/bad.jsonl";
  std::ofstream(bad) << "{\"text\": \"ok\"}\n{\"prompt\": 1}\n";
  r = run_cli("--tokenizers " + shell_quote(test::tokenizer_dir()) + " --jsonl " + shell_quote(bad));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("bad.jsonl line 2: expected one object {\"text\": \"...\"} per line, got object without "
                       "\"text\""),
            std::string::npos)
      << r.out;
  std::ofstream(bad) << "a cat\n";
  r = run_cli("--tokenizers " + shell_quote(test::tokenizer_dir()) + " --jsonl " + shell_quote(bad));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("bad.jsonl line 1: bad JSON (each line is one object {\"text\": \"...\"})"), std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace flux
