// Any bytes in, well-formed ids out: random bytes (mostly invalid UTF-8), random code points, and 1 MB inputs.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"
#include "text/unicode_text.h"

namespace flux {
namespace {

const ClipTokenizer& clip() {
  static const ClipTokenizer tok = ClipTokenizer::load(test::tokenizer_dir() + "/clip-l");
  return tok;
}

const T5Tokenizer& t5() {
  static const T5Tokenizer tok = T5Tokenizer::load(test::tokenizer_dir() + "/t5");
  return tok;
}

void check_well_formed(const std::string& text) {
  const ClipTokens c = clip().encode(text);
  ASSERT_EQ(c.ids.size(), 77u);
  EXPECT_EQ(c.ids[0], ClipTokenizer::kBos);
  EXPECT_GE(c.untruncated_len, 2);
  EXPECT_EQ(c.ids[static_cast<size_t>(std::min(c.untruncated_len, 77) - 1)], ClipTokenizer::kEos);
  for (int32_t id : c.ids) ASSERT_TRUE(id >= 0 && id <= ClipTokenizer::kEos);
  const T5Tokens t = t5().encode(text, 256);
  ASSERT_EQ(t.ids.size(), 256u);
  EXPECT_EQ(t.ids[static_cast<size_t>(std::min(t.untruncated_len, 256) - 1)], T5Tokenizer::kEos);
  for (int32_t id : t.ids) ASSERT_TRUE(id >= 0 && id < 32100);
}

TEST(TokenizerRobustness, RandomBytes) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text(rng() % 200, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    SCOPED_TRACE(trial);
    check_well_formed(text);
  }
}

TEST(TokenizerRobustness, RandomCodePointsAndMarkup) {
  std::mt19937 rng(99);
  const std::vector<std::string> fragments = {
      "&amp;", "&#x", ";", "<", "</s>", "<extra_id_", "<|endoftext|>", "Ã", "\xC2\xA9", "\r\n", "\x1B[", "ﬁ",
      "Ｆ",    "'s",  "'", " ", "\t",   "Σ"};
  for (int trial = 0; trial < 300; ++trial) {
    std::u32string chars;
    std::string text;
    for (int i = 0, n = static_cast<int>(rng() % 60); i < n; ++i) {
      if (rng() % 3 == 0) {
        text += fragments[rng() % fragments.size()];
      } else {
        char32_t c = static_cast<char32_t>(rng() % 0x30000);
        if (c >= 0xD800 && c <= 0xDFFF) c = 'x';
        text::append_utf8(c, text);
      }
    }
    SCOPED_TRACE(trial);
    check_well_formed(text);
  }
}

TEST(TokenizerRobustness, OneMegabyteInputs) {
  std::mt19937 rng(5);
  std::string random_bytes(1 << 20, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng() % 256);
  // One 256 KB word: BPE over a quarter of a million symbols (the fast path; 1 MB takes ~1.5 s, see the bench).
  std::string one_word(1 << 18, 'a');
  for (size_t i = 0; i < one_word.size(); i += 7) one_word[i] = static_cast<char>('a' + rng() % 26);
  std::string prose;
  while (prose.size() < (1 << 20)) prose += "A cat holding a sign that says hello world, café 猫 &amp; ";
  for (const std::string* text : {&random_bytes, &one_word, &prose}) {
    const auto t0 = std::chrono::steady_clock::now();
    check_well_formed(*text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 20.0);  // generous: this is about not hanging, the benchmark measures speed
  }
  EXPECT_GT(clip().encode(one_word).untruncated_len, 1000);  // ids counted past the truncation
}

}  // namespace
}  // namespace flux
