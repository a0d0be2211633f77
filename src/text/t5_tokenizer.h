// T5 tokenizer (SentencePiece unigram, spiece.model via Debian's libsentencepiece) with the behaviour of
// HF's T5TokenizerFast on FLUX's tokenizer.json: the special tokens </s>, <pad>, <unk> and <extra_id_N>
// are matched in the text; content truncated to max_length - 1, EOS (1) appended, padded with 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flux {

struct T5Tokens {
  std::vector<int32_t> ids;  // exactly max_length ids
  int untruncated_len = 0;   // content + EOS before truncation
  bool truncated() const { return untruncated_len > static_cast<int>(ids.size()); }
};

class T5Tokenizer {
 public:
  static constexpr int32_t kPad = 0;
  static constexpr int32_t kEos = 1;
  static constexpr int32_t kUnk = 2;

  // dir holds spiece.model. Throws Error naming the file and problem.
  static T5Tokenizer load(const std::string& dir);
  ~T5Tokenizer();
  T5Tokenizer(T5Tokenizer&&) noexcept;
  T5Tokenizer& operator=(T5Tokenizer&&) noexcept;

  // max_length: 256 for schnell, 512 for dev. Any bytes accepted. Thread-safe.
  T5Tokens encode(std::string_view text, int max_length) const;

 private:
  T5Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Finds the CLIP and T5 tokenizer folders under `dir`: a diffusers model folder (tokenizer/, tokenizer_2/)
// or a folder laid out like shared/tokenizers (clip-l/, t5/). Throws Error naming what is missing.
struct TokenizerDirs {
  std::string clip;
  std::string t5;
};
TokenizerDirs find_tokenizer_dirs(const std::string& dir);

}  // namespace flux
