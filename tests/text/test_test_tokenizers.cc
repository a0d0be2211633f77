// The test tokenizers of our own making (text/test_tokenizers.h): they load in the real tokenizer classes,
// tokenize sensibly, are deterministic, and the smaller T5 vocabulary is accepted only from a marked folder.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"
#include "text/test_tokenizers.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

const std::string& test_tokenizers() {
  static const std::string dir = [] {
    const std::string d = test::temp_dir("test_tokenizers");
    write_test_tokenizers(d);
    return d;
  }();
  return dir;
}

TEST(TestTokenizers, FoldersAreMarkedAndFoundLikeRealOnes) {
  const TokenizerDirs dirs = find_tokenizer_dirs(test_tokenizers());
  EXPECT_TRUE(is_test_tokenizer_dir(dirs.clip));
  EXPECT_TRUE(is_test_tokenizer_dir(dirs.t5));
  EXPECT_FALSE(is_test_tokenizer_dir(test::tokenizer_dir() + "/t5"));  // the real files are not marked
  EXPECT_NE(test::read_file(dirs.clip + "/README.txt").find("TEST TOKENIZER"), std::string::npos);
}

TEST(TestTokenizers, ClipVocabularyIsByteLevelBpeWithClipSpecialIds) {
  const std::string dir = test_tokenizers() + "/clip-l";
  const auto vocab = nlohmann::json::parse(test::read_file(dir + "/vocab.json"));
  std::set<int64_t> ids;
  for (const auto& [token, id] : vocab.items()) EXPECT_TRUE(ids.insert(id.get<int64_t>()).second) << token;
  EXPECT_EQ(vocab.at("<|startoftext|>"), 49406);
  EXPECT_EQ(vocab.at("<|endoftext|>"), 49407);
  EXPECT_GT(vocab.size(), 512u + 100u);        // 512 byte tokens plus learned merges
  EXPECT_LT(*std::prev(ids.end(), 3), 49406);  // below the two special ids

  const ClipTokenizer clip = ClipTokenizer::load(dir);
  // Words frequent in the built-in text became single tokens; an unseen word is split but still encoded.
  EXPECT_EQ(clip.encode_content("the").size(), 1u);
  EXPECT_EQ(clip.encode_content("with").size(), 1u);
  EXPECT_GT(clip.encode_content("xylophone").size(), 2u);
  const ClipTokens t = clip.encode("a photo of a red fox in the snow");
  ASSERT_EQ(t.ids.size(), 77u);
  EXPECT_EQ(t.ids[0], ClipTokenizer::kBos);
  EXPECT_EQ(t.ids[static_cast<size_t>(t.pool_index)], ClipTokenizer::kEos);
  for (int32_t id : t.ids) EXPECT_LT(id, 49408);
}

TEST(TestTokenizers, T5IsASmallSentencePieceModelWithT5SpecialIds) {
  const T5Tokenizer t5 = T5Tokenizer::load(test_tokenizers() + "/t5");
  const T5Tokens t = t5.encode("a photo of a red fox <extra_id_0> in the snow", 32);
  ASSERT_EQ(t.ids.size(), 32u);
  const auto eos = static_cast<size_t>(t.untruncated_len - 1);
  EXPECT_EQ(t.ids[eos], T5Tokenizer::kEos);
  EXPECT_EQ(t.ids[eos + 1], T5Tokenizer::kPad);
  bool extra = false;
  for (size_t i = 0; i < eos; ++i) {
    EXPECT_GE(t.ids[i], 2);
    EXPECT_LT(t.ids[i], 32128);  // T5's embedding
    extra |= t.ids[i] == 32099;
  }
  EXPECT_TRUE(extra) << "<extra_id_0> is 32099 as in T5";
  // Common words are whole pieces: fewer ids than characters.
  EXPECT_LT(t.untruncated_len, 20);
}

TEST(TestTokenizers, TheSmallT5ModelIsRefusedWithoutTheMarker) {
  const std::string dir = test::temp_dir("unmarked_t5");
  fs::copy_file(test_tokenizers() + "/t5/spiece.model", dir + "/spiece.model");
  try {
    T5Tokenizer::load(dir);
    FAIL() << "an unmarked small spiece.model must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 32000 pieces"), std::string::npos) << e.what();
  }
}

TEST(TestTokenizers, WritingIsDeterministic) {
  const std::string again = test::temp_dir("test_tokenizers_again");
  write_test_tokenizers(again);
  for (const char* f : {"clip-l/vocab.json", "clip-l/merges.txt", "t5/spiece.model", "t5/tokenizer_config.json"}) {
    const std::string a = test::read_file(test_tokenizers() + "/" + f), b = test::read_file(again + "/" + f);
    EXPECT_FALSE(a.empty()) << f;
    EXPECT_EQ(a, b) << f;
  }
}

}  // namespace
}  // namespace flux
