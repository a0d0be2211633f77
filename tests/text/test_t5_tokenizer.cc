// T5 tokenizer: special tokens, truncation and padding, loader errors, and find_tokenizer_dirs.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "base/error.h"
#include "test_util.h"
#include "text/t5_tokenizer.h"

namespace flux {
namespace {

using test::error_of;

namespace fs = std::filesystem;

const T5Tokenizer& t5() {
  static const T5Tokenizer tok = T5Tokenizer::load(test::tokenizer_dir() + "/t5");
  return tok;
}

std::vector<int32_t> content(const std::string& text) {
  T5Tokens t = t5().encode(text, 512);
  t.ids.resize(static_cast<size_t>(t.untruncated_len));
  t.ids.pop_back();  // EOS
  return t.ids;
}

TEST(T5Tokenizer, KnownIdsFromTheHfDocs) {
  EXPECT_EQ(content("translate English to German: The house is wonderful."),
            (std::vector<int32_t>{13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5}));
  EXPECT_EQ(content("Hello world"), (std::vector<int32_t>{8774, 296}));
}

TEST(T5Tokenizer, SpecialTokensAreMatchedInTheText) {
  EXPECT_EQ(content("<pad><unk></s>"), (std::vector<int32_t>{0, 2, 1}));
  EXPECT_EQ(content("<extra_id_0><extra_id_99>"), (std::vector<int32_t>{32099, 32000}));
  EXPECT_EQ(content("<extra_id_5>cat"), (std::vector<int32_t>{32094, 1712}));  // "▁cat": Metaspace "always"
  // Not special tokens: out of range, leading zero, unterminated. They are plain text.
  for (const char* text : {"<extra_id_100>", "<extra_id_07>", "<extra_id_1", "< /s>", "<s>"}) {
    const auto ids = content(text);
    for (int32_t id : ids) EXPECT_LT(id, 32000) << text;
    EXPECT_GT(ids.size(), 1u) << text;
  }
}

TEST(T5Tokenizer, TruncationAndPadding) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "cat ";
  const T5Tokens t = t5().encode(text, 256);
  EXPECT_EQ(t.ids.size(), 256u);
  EXPECT_EQ(t.untruncated_len, 301);
  EXPECT_TRUE(t.truncated());
  EXPECT_EQ(t.ids[255], T5Tokenizer::kEos);
  EXPECT_EQ(t.ids[254], 1712);
  const T5Tokens e = t5().encode("", 4);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{1, 0, 0, 0}));
  EXPECT_EQ(e.untruncated_len, 1);
  EXPECT_EQ(t5().encode(text, 1).ids, (std::vector<int32_t>{1}));
  EXPECT_THROW(t5().encode("x", 0), Error);
}

TEST(T5Tokenizer, ConcurrentEncodeEqualsSerial) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 30; ++i)
    prompts.push_back("prompt " + std::to_string(i * 104729) + " <extra_id_" + std::to_string(i) + "> a cat 猫 café");
  std::vector<std::vector<int32_t>> serial;
  for (const auto& p : prompts) serial.push_back(t5().encode(p, 64).ids);
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 10; ++rep)
        for (size_t i = 0; i < prompts.size(); ++i)
          if (t5().encode(prompts[i], 64).ids != serial[i]) ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(T5Tokenizer, LoaderErrorsNameTheFile) {
  const std::string dir = test::temp_dir("t5-bad");
  std::string msg = error_of([&] { T5Tokenizer::load(dir); });
  EXPECT_NE(msg.find("spiece.model: missing"), std::string::npos) << msg;
  std::ofstream(dir + "/spiece.model") << "this is not a sentencepiece model";
  msg = error_of([&] { T5Tokenizer::load(dir); });
  EXPECT_NE(msg.find("spiece.model: SentencePiece cannot load it"), std::string::npos) << msg;
}

TEST(FindTokenizerDirs, BothLayoutsAndClearErrors) {
  const std::string shared = test::tokenizer_dir();
  TokenizerDirs dirs = find_tokenizer_dirs(shared);
  EXPECT_EQ(dirs.clip, (fs::path(shared) / "clip-l").string());
  EXPECT_EQ(dirs.t5, (fs::path(shared) / "t5").string());

  const std::string model = test::temp_dir("diffusers");
  fs::create_directory_symlink(fs::absolute(shared + "/clip-l"), model + "/tokenizer");
  std::string msg = error_of([&] { find_tokenizer_dirs(model); });
  EXPECT_NE(msg.find("found tokenizer/ but not tokenizer_2/"), std::string::npos) << msg;
  fs::create_directory_symlink(fs::absolute(shared + "/t5"), model + "/tokenizer_2");
  dirs = find_tokenizer_dirs(model);
  EXPECT_EQ(dirs.clip, model + "/tokenizer");
  EXPECT_EQ(dirs.t5, model + "/tokenizer_2");
  EXPECT_EQ(T5Tokenizer::load(dirs.t5).encode("Hello world", 3).ids, (std::vector<int32_t>{8774, 296, 1}));

  msg = error_of([&] { find_tokenizer_dirs(test::temp_dir("empty")); });
  EXPECT_NE(msg.find("found neither"), std::string::npos) << msg;
  msg = error_of([&] { find_tokenizer_dirs("/nonexistent/fluxcpp"); });
  EXPECT_NE(msg.find("not a directory"), std::string::npos) << msg;
}

}  // namespace
}  // namespace flux
