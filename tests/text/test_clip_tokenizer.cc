// CLIP tokenizer: the ftfy-like clean-up step by step, BPE's fast path against the plain one, truncation,
// pool index, thread safety, load time and the errors for malformed files.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>

#include "base/error.h"
#include "test_util.h"
#include "text/bpe.h"
#include "text/clip_tokenizer.h"
#include "text/fix_text.h"
#include "text/unicode_text.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

const ClipTokenizer& clip() {
  static const ClipTokenizer tok = ClipTokenizer::load(test::tokenizer_dir() + "/clip-l");
  return tok;
}

std::string fixed(std::string_view utf8) { return text::encode_utf8(text::fix_text(text::decode_utf8(utf8))); }

TEST(Utf8, InvalidBytesBecomeOneReplacementPerMaximalSubpart) {
  // As Python's bytes.decode("utf-8", "replace"): lone continuation, truncated 3-byte sequence, surrogate
  // encoding (ED A0 80: three), overlong (C0 AF: two), byte FF.
  EXPECT_EQ(text::decode_utf8("a\x80"
                              "b"),
            U"a\uFFFDb");
  EXPECT_EQ(text::decode_utf8("\xE2\x82"
                              "x"),
            U"\uFFFDx");
  EXPECT_EQ(text::decode_utf8("\xED\xA0\x80"), U"\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(text::decode_utf8("\xC0\xAF"), U"\uFFFD\uFFFD");
  EXPECT_EQ(text::decode_utf8("\xFF"), U"\uFFFD");
  EXPECT_EQ(text::decode_utf8("\xF0\x9F\x90\xB1"), U"\U0001F431");
  EXPECT_EQ(text::encode_utf8(U"\U0001F431\u00E9a"),
            "\xF0\x9F\x90\xB1\xC3\xA9"
            "a");
}

TEST(Unicode, LowerCaseIsPythonFullMapping) {
  EXPECT_EQ(text::to_lower(U"ÉCOLE İ ΟΔΟΣ"), U"école i\u0307 οδος");  // dotted I -> i + U+0307; final sigma
  EXPECT_TRUE(text::is_space(0x3000));
  EXPECT_TRUE(text::is_space(0x1F));  // Python's isspace: bidi class S
  EXPECT_FALSE(text::is_space(0x200B));
  EXPECT_TRUE(text::is_letter(U'猫'));
  EXPECT_TRUE(text::is_number(U'½'));
  EXPECT_FALSE(text::is_letter(U'_'));
}

TEST(FixText, FtfyDefaultSteps) {
  EXPECT_EQ(fixed("caf\xC3\x83\xC2\xA9"), "café");                                // "cafÃ©": UTF-8 read as Latin-1
  EXPECT_EQ(fixed("This \xC3\xA2\xE2\x82\xAC\xE2\x80\x9D dash"), "This — dash");  // "â€”" via Windows-1252
  EXPECT_EQ(fixed("Tom &amp; Jerry &lt;3 caf&eacute; &#x2019; &#8230; &EACUTE;"), "Tom & Jerry <3 café ' … É");
  EXPECT_EQ(fixed("<p>Tom &amp; Jerry</p>"), "<p>Tom &amp; Jerry</p>");        // a '<' turns unescaping off
  EXPECT_EQ(fixed("&amp; first\n<b> then &amp;"), "& first\n<b> then &amp;");  // ... from that line on
  EXPECT_EQ(fixed("&bogus; &#xZZ; & amp;"), "&bogus; &#xZZ; & amp;");
  EXPECT_EQ(fixed("ＦＵＬＬ　１２３ ｶ"), "FULL 123 カ");
  EXPECT_EQ(fixed("ﬁne ﬂower ĳ"), "fine flower ij");
  EXPECT_EQ(fixed("\u2018a\u2019 \u201Cb\u201D"), "'a' \"b\"");
  EXPECT_EQ(fixed("a\x1B[36;44mb\x1B[0m\x01\x7F\xEF\xBB\xBF"), "ab");
  EXPECT_EQ(fixed("I\xC2\x92m"), "I'm");  // C1 control read as Windows-1252, then uncurled
  EXPECT_EQ(fixed("e\xCC\x81"), "é");     // NFC
  EXPECT_EQ(fixed("a\r\nb\rc"), "a\nb\nc");
  EXPECT_EQ(fixed("Zürich Straße ÉCOLE © ± × ÷"), "Zürich Straße ÉCOLE © ± × ÷");  // no false mojibake
}

TEST(FixText, WhitespaceClean) {
  EXPECT_EQ(text::whitespace_clean(U"  a \t\n b\u00A0\u3000c  "), U"a b c");
  EXPECT_EQ(text::whitespace_clean(U" \n "), U"");
}

TEST(Bpe, FastPathEqualsPlainOnASyntheticTable) {
  std::mt19937 rng(7);
  // A merge producing a symbol an earlier merge already used makes the table unordered: the fast path then
  // falls back to the plain algorithm.
  text::BpeMerges unordered;
  ASSERT_TRUE(unordered.add(4, 2, 5));
  ASSERT_TRUE(unordered.add(0, 1, 4));
  EXPECT_FALSE(unordered.ordered());
  std::vector<int32_t> w = {0, 1, 2}, w_fast = w;
  unordered.merge_word_plain(w);
  unordered.merge_word_fast(w_fast);
  EXPECT_EQ(w, (std::vector<int32_t>{5}));  // (0,1) -> 4, then (4,2) -> 5
  EXPECT_EQ(w_fast, w);
  // Synthetic merge table: symbols 0..3, merges (0,1)->4, (4,2)->5, (1,2)->6, (5,3)->7,
  // (6,6)->8, (3,3)->9.
  text::BpeMerges merges;
  ASSERT_TRUE(merges.add(0, 1, 4));
  ASSERT_TRUE(merges.add(4, 2, 5));
  ASSERT_TRUE(merges.add(1, 2, 6));
  ASSERT_TRUE(merges.add(5, 3, 7));
  ASSERT_TRUE(merges.add(6, 6, 8));
  ASSERT_TRUE(merges.add(3, 3, 9));
  ASSERT_FALSE(merges.add(3, 3, 9));
  ASSERT_TRUE(merges.ordered());
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int32_t> word(1 + rng() % 300);
    for (auto& s : word) s = static_cast<int32_t>(rng() % 4);
    std::vector<int32_t> plain = word, fast = word;
    merges.merge_word_plain(plain);
    merges.merge_word_fast(fast);
    ASSERT_EQ(plain, fast) << "trial " << trial;
  }
}

TEST(Bpe, FastPathEqualsPlainWithTheRealMerges) {
  // The real vocabulary and merges (read here independently of the tokenizer), on long words of letters and
  // bytes, merged by both algorithms; and the tokenizer's own result for the word must be the same ids.
  std::ifstream vocab_in(test::tokenizer_dir() + "/clip-l/vocab.json");
  const auto vocab = nlohmann::json::parse(vocab_in).get<std::unordered_map<std::string, int32_t>>();
  text::BpeMerges merges;
  std::ifstream merges_in(test::tokenizer_dir() + "/clip-l/merges.txt");
  std::string line;
  std::getline(merges_in, line);  // #version
  while (std::getline(merges_in, line) && !line.empty()) {
    const size_t space = line.find(' ');
    const std::string l = line.substr(0, space), r = line.substr(space + 1);
    ASSERT_TRUE(merges.add(vocab.at(l), vocab.at(r), vocab.at(l + r))) << line;
  }
  EXPECT_EQ(merges.size(), 48894u);
  EXPECT_TRUE(merges.ordered());
  std::mt19937 rng(11);
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
  for (int trial = 0; trial < 20; ++trial) {
    std::string word;
    const size_t n = 49 + rng() % 300;
    for (size_t i = 0; i < n; ++i) word.push_back(letters[std::min<size_t>(rng() % 36, letters.size() - 1)]);
    std::vector<int32_t> plain;
    for (size_t i = 0; i < word.size(); ++i)
      plain.push_back(vocab.at(std::string(1, word[i]) + (i + 1 == word.size() ? "</w>" : "")));
    std::vector<int32_t> fast = plain;
    merges.merge_word_plain(plain);
    merges.merge_word_fast(fast);
    ASSERT_EQ(plain, fast) << word;
    EXPECT_EQ(clip().encode_content(word), plain) << word;
  }
}

TEST(ClipTokenizer, TruncationPaddingAndPoolIndex) {
  const ClipTokens a = clip().encode("a photo of a cat");
  EXPECT_EQ(a.ids[0], ClipTokenizer::kBos);
  EXPECT_EQ(a.untruncated_len, 7);
  EXPECT_EQ(a.pool_index, 6);
  EXPECT_FALSE(a.truncated());
  for (size_t i = 6; i < 77; ++i) EXPECT_EQ(a.ids[i], ClipTokenizer::kEos);

  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "cat ";
  const ClipTokens b = clip().encode(long_text);
  EXPECT_EQ(b.untruncated_len, 102);
  EXPECT_TRUE(b.truncated());
  EXPECT_EQ(b.ids.size(), 77u);
  EXPECT_EQ(b.ids[76], ClipTokenizer::kEos);
  EXPECT_EQ(b.pool_index, 76);
  EXPECT_EQ(clip().encode(long_text, 10).ids.size(), 10u);

  // A literal special token is kept, also in upper case (the regex runs on lower-cased text).
  const ClipTokens c = clip().encode("a <|ENDOFTEXT|> b<|startoftext|>");
  EXPECT_EQ(c.pool_index, 2);
  EXPECT_EQ(c.ids[4], ClipTokenizer::kBos);
  EXPECT_THROW(clip().encode("x", 1), Error);
}

TEST(ClipTokenizer, ConcurrentEncodeEqualsSerial) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 40; ++i)
    prompts.push_back("prompt " + std::to_string(i * 7919) + " a cat, crème brûlée 猫 #" +
                      std::string(static_cast<size_t>(i % 5), 'z'));
  std::vector<std::vector<int32_t>> serial;
  clip().clear_cache();
  for (const auto& p : prompts) serial.push_back(clip().encode(p).ids);
  clip().clear_cache();
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = (t + rep) % prompts.size(), k = 0; k < prompts.size(); ++k, i = (i + 1) % prompts.size())
          if (clip().encode(prompts[i]).ids != serial[i]) ++mismatches;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(ClipTokenizer, LoadsWellUnderASecond) {
  const auto t0 = std::chrono::steady_clock::now();
  const ClipTokenizer tok = ClipTokenizer::load(test::tokenizer_dir() + "/clip-l");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 1.0);
  EXPECT_EQ(tok.encode("hello").ids, clip().encode("hello").ids);
}

// A tokenizer folder with the real files, one of which the test then breaks.
std::string copy_clip_dir(const std::string& tag) {
  const std::string dir = test::temp_dir(tag);
  for (const char* name : {"vocab.json", "merges.txt"})
    fs::copy_file(test::tokenizer_dir() + "/clip-l/" + name, dir + "/" + name);
  return dir;
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string load_error(const std::string& dir) {
  try {
    ClipTokenizer::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ClipTokenizer, ErrorsNameTheFileAndProblem) {
  std::string dir = copy_clip_dir("clip-missing");
  fs::remove(dir + "/vocab.json");
  EXPECT_NE(load_error(dir).find("vocab.json: cannot open"), std::string::npos) << load_error(dir);

  dir = copy_clip_dir("clip-badjson");
  write_file(dir + "/vocab.json", "{\"a\": 1,");
  EXPECT_NE(load_error(dir).find("vocab.json: bad JSON"), std::string::npos) << load_error(dir);

  dir = copy_clip_dir("clip-badid");
  write_file(dir + "/vocab.json", "{\"<|startoftext|>\": 5, \"<|endoftext|>\": 49407}");
  EXPECT_NE(load_error(dir).find("expected id 49406, got 5"), std::string::npos) << load_error(dir);

  dir = copy_clip_dir("clip-badmerge");
  {
    std::ifstream in(dir + "/merges.txt");
    std::string header, first;
    std::getline(in, header);
    std::getline(in, first);
    write_file(dir + "/merges.txt", header + "\n" + first + "\nthree parts here\n");
  }
  EXPECT_NE(load_error(dir).find("merges.txt line 3: expected \"left right\""), std::string::npos) << load_error(dir);

  dir = copy_clip_dir("clip-unknownmerge");
  write_file(dir + "/merges.txt", "#version: 0.2\nqqqqzz xxyy\n");
  EXPECT_NE(load_error(dir).find("line 2"), std::string::npos) << load_error(dir);
  EXPECT_NE(load_error(dir).find("is not in vocab.json"), std::string::npos) << load_error(dir);
}

}  // namespace
}  // namespace flux
