// T5 tokenizer: SentencePiece (Debian libsentencepiece) on spiece.model, with the special-token handling of
// HF tokenizers on FLUX's tokenizer_2/tokenizer.json: the text is split at the added tokens (<pad>, </s>,
// <unk>, <extra_id_0..99>; not normalised, no lstrip/rstrip), each piece between them is encoded on its own
// (Metaspace prepend_scheme "always" gives every piece a leading "▁", which is what SentencePiece's dummy
// prefix does: "<extra_id_0>cat" -> 32099, "▁cat"), then content[:max_length-1] + [</s>] padded with <pad>.
#include "text/t5_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "text/test_tokenizers.h"
#include "text/unicode_text.h"

namespace flux {
namespace {

constexpr int kNumPieces = 32000;
constexpr int kNumExtraIds = 100;

// The added token starting at text[pos], as (length, id), or length 0.
std::pair<size_t, int32_t> match_special(std::string_view text, size_t pos) {
  const std::string_view rest = text.substr(pos);
  if (rest.starts_with("</s>")) return {4, T5Tokenizer::kEos};
  if (rest.starts_with("<pad>")) return {5, T5Tokenizer::kPad};
  if (rest.starts_with("<unk>")) return {5, T5Tokenizer::kUnk};
  constexpr std::string_view kExtra = "<extra_id_";
  if (rest.starts_with(kExtra)) {
    size_t i = kExtra.size();
    int n = 0, digits = 0;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9' && digits < 3) n = n * 10 + (rest[i++] - '0'), ++digits;
    const bool canonical = digits > 0 && (digits == 1 || rest[kExtra.size()] != '0');  // "<extra_id_07>" is text
    if (canonical && n < kNumExtraIds && i < rest.size() && rest[i] == '>')
      return {i + 1, static_cast<int32_t>(kNumPieces + kNumExtraIds - 1 - n)};  // <extra_id_N> = 32099 - N
  }
  return {0, 0};
}

}  // namespace

struct T5Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

T5Tokenizer::T5Tokenizer() : impl_(std::make_unique<Impl>()) {}
T5Tokenizer::~T5Tokenizer() = default;
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;

T5Tokenizer T5Tokenizer::load(const std::string& dir) {
  const std::string path = dir + "/spiece.model";
  FLUX_CHECK(std::filesystem::is_regular_file(path), "file ", path, ": missing (expected the T5 SentencePiece model)");
  T5Tokenizer tok;
  auto& sp = tok.impl_->sp;
  const auto status = sp.Load(path);
  FLUX_CHECK(status.ok(), "file ", path, ": SentencePiece cannot load it: ", status.ToString());
  // A test tokenizer (test_tokenizers.h) has fewer pieces; its ids still fit T5's embedding.
  const bool test_tokenizer = is_test_tokenizer_dir(dir);
  FLUX_CHECK(sp.GetPieceSize() == kNumPieces || (test_tokenizer && sp.GetPieceSize() < kNumPieces), "file ", path,
             ": expected ", kNumPieces, " pieces (T5), got ", sp.GetPieceSize());
  FLUX_CHECK(sp.pad_id() == kPad && sp.eos_id() == kEos && sp.unk_id() == kUnk, "file ", path,
             ": expected pad/eos/unk ids 0/1/2, got ", sp.pad_id(), "/", sp.eos_id(), "/", sp.unk_id());
  return tok;
}

T5Tokens T5Tokenizer::encode(std::string_view raw, int max_length) const {
  FLUX_CHECK(max_length >= 1, "T5 tokenizer: max_length: expected >= 1 (room for </s>), got ", max_length);
  const std::string text = text::sanitize_utf8(raw);
  std::vector<int32_t> content;
  std::vector<int> piece_ids;
  auto encode_piece = [&](std::string_view piece) {
    if (piece.empty()) return;
    const auto status = impl_->sp.Encode(piece, &piece_ids);
    FLUX_CHECK(status.ok(), "T5 tokenizer: SentencePiece failed: ", status.ToString());
    content.insert(content.end(), piece_ids.begin(), piece_ids.end());
  };
  size_t start = 0;
  for (size_t pos = text.find('<'); pos != std::string::npos; pos = text.find('<', pos)) {
    const auto [len, id] = match_special(text, pos);
    if (len == 0) {
      ++pos;
      continue;
    }
    encode_piece(std::string_view(text).substr(start, pos - start));
    content.push_back(id);
    pos += len;
    start = pos;
  }
  encode_piece(std::string_view(text).substr(start));

  T5Tokens tokens;
  tokens.untruncated_len = static_cast<int>(content.size()) + 1;
  const size_t keep = std::min(content.size(), static_cast<size_t>(max_length - 1));
  tokens.ids.assign(content.begin(), content.begin() + static_cast<ptrdiff_t>(keep));
  tokens.ids.push_back(kEos);
  tokens.ids.resize(max_length, kPad);
  return tokens;
}

TokenizerDirs find_tokenizer_dirs(const std::string& dir) {
  namespace fs = std::filesystem;
  FLUX_CHECK(fs::is_directory(dir), "tokenizers: ", dir, ": not a directory");
  const fs::path root(dir);
  for (const auto& [clip, t5] : {std::pair{"tokenizer", "tokenizer_2"}, std::pair{"clip-l", "t5"}}) {
    const bool has_clip = fs::is_directory(root / clip), has_t5 = fs::is_directory(root / t5);
    if (has_clip && has_t5) return {(root / clip).string(), (root / t5).string()};
    FLUX_CHECK(!has_clip && !has_t5, "tokenizers: ", dir, ": found ", (has_clip ? clip : t5), "/ but not ",
               (has_clip ? t5 : clip), "/");
  }
  fail("tokenizers: ", dir, ": expected tokenizer/ and tokenizer_2/ (diffusers model folder) or clip-l/ and t5/, ",
       "found neither");
}

}  // namespace flux
