// CLIP BPE tokenizer: transformers' CLIPTokenizer (tokenization_clip.py) with ftfy installed, as FluxPipeline
// calls it. Steps: split at the literal special tokens (HF's added-token trie), then per piece
// whitespace_clean(fix_text(piece)).lower(), the CLIP regex, byte-level BPE with a word cache.
#include "text/clip_tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>

#include "base/error.h"
#include "text/bpe.h"
#include "text/fix_text.h"
#include "text/unicode_text.h"

namespace flux {
namespace {

constexpr std::u32string_view kStartOfText = U"<|startoftext|>";
constexpr std::u32string_view kEndOfText = U"<|endoftext|>";
constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kMaxCacheEntries = 1 << 15;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FLUX_CHECK(in, "file ", path, ": cannot open (missing or unreadable)");
  std::ostringstream text;
  text << in.rdbuf();
  FLUX_CHECK(!in.bad(), "file ", path, ": read error");
  return text.str();
}

// One match of the CLIP pattern (re.IGNORECASE, on lower-cased text):
// <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// Returns the match length at `pos` (0: no match, the character is whitespace and skipped).
size_t match_clip_pattern(std::u32string_view text, size_t pos) {
  const std::u32string_view rest = text.substr(pos);
  if (rest.starts_with(kStartOfText)) return kStartOfText.size();
  if (rest.starts_with(kEndOfText)) return kEndOfText.size();
  auto lower_ascii = [](char32_t c) -> char32_t {
    if (c == 0x17F) return 's';  // LATIN SMALL LETTER LONG S case-folds to 's'
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
  };
  if (rest[0] == '\'' && rest.size() >= 2) {
    const char32_t a = lower_ascii(rest[1]);
    const char32_t b = rest.size() >= 3 ? lower_ascii(rest[2]) : 0;
    if (a == 's' || a == 't') return 2;
    if ((a == 'r' || a == 'v') && b == 'e') return 3;
    if (a == 'm') return 2;
    if (a == 'l' && b == 'l') return 3;
    if (a == 'd') return 2;
  }
  if (text::is_letter(rest[0])) {
    size_t n = 1;
    while (n < rest.size() && text::is_letter(rest[n])) ++n;
    return n;
  }
  if (text::is_number(rest[0])) return 1;
  if (text::is_space(rest[0])) return 0;
  size_t n = 1;
  while (n < rest.size() && !text::is_space(rest[n]) && !text::is_letter(rest[n]) && !text::is_number(rest[n])) ++n;
  return n;
}

}  // namespace

struct ClipTokenizer::Impl {
  text::BpeMerges merges;
  std::array<int32_t, 256> byte_id{};      // vocabulary id of each byte's character
  std::array<int32_t, 256> byte_eow_id{};  // ... and of that character + "</w>" (end of word)

  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;  // word bytes -> ids

  void bpe(const std::string& word, std::vector<int32_t>& out) const {
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
      std::shared_lock lock(cache_mutex);
      if (auto it = cache.find(word); it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> symbols(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      const auto b = static_cast<unsigned char>(word[i]);
      symbols[i] = i + 1 == word.size() ? byte_eow_id[b] : byte_id[b];
    }
    merges.merge_word(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
    if (cacheable) {
      std::unique_lock lock(cache_mutex);
      if (cache.size() >= kMaxCacheEntries) cache.clear();
      cache.emplace(word, std::move(symbols));
    }
  }

  // One piece of text between literal special tokens.
  void encode_piece(std::u32string_view piece, std::vector<int32_t>& out) const {
    const std::u32string clean = text::to_lower(text::whitespace_clean(text::fix_text(piece)));
    std::string word;
    for (size_t pos = 0; pos < clean.size();) {
      const size_t n = match_clip_pattern(clean, pos);
      if (n == 0) {
        ++pos;
        continue;
      }
      const std::u32string_view token(clean.data() + pos, n);
      pos += n;
      if (token == kStartOfText) {
        out.push_back(kBos);
      } else if (token == kEndOfText) {
        out.push_back(kEos);
      } else {
        word = text::encode_utf8(token);
        bpe(word, out);
      }
    }
  }
};

ClipTokenizer::ClipTokenizer() : impl_(std::make_unique<Impl>()) {}
ClipTokenizer::~ClipTokenizer() = default;
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;

ClipTokenizer ClipTokenizer::load(const std::string& dir) {
  ClipTokenizer tok;
  Impl& impl = *tok.impl_;

  const std::string vocab_path = dir + "/vocab.json";
  nlohmann::json vocab_json;
  try {
    vocab_json = nlohmann::json::parse(read_file(vocab_path));
  } catch (const nlohmann::json::exception& e) {
    fail("file ", vocab_path, ": bad JSON: ", e.what());
  }
  FLUX_CHECK(vocab_json.is_object(), "file ", vocab_path, ": expected a JSON object {token: id}, got ",
             vocab_json.type_name());
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(vocab_json.size());
  for (const auto& [token, id] : vocab_json.items()) {
    FLUX_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (int64_t{1} << 30), "file ",
               vocab_path, ": token \"", token, "\": expected a non-negative integer id, got ", id.dump());
    vocab.emplace(token, static_cast<int32_t>(id.get<int64_t>()));
  }
  auto expect_id = [&](const std::string& token, int32_t want) {
    auto it = vocab.find(token);
    FLUX_CHECK(it != vocab.end(), "file ", vocab_path, ": missing token ", token);
    FLUX_CHECK(it->second == want, "file ", vocab_path, ": token ", token, ": expected id ", want, ", got ",
               it->second);
  };
  expect_id("<|startoftext|>", kBos);
  expect_id("<|endoftext|>", kEos);
  const auto chars = text::byte_to_char();
  for (unsigned b = 0; b < 256; ++b) {
    std::string ch;
    text::append_utf8(chars[b], ch);
    auto it = vocab.find(ch);
    auto eow = vocab.find(ch + "</w>");
    FLUX_CHECK(it != vocab.end() && eow != vocab.end(), "file ", vocab_path, ": missing the byte token for byte ", b,
               " (\"", ch, "\" and \"", ch, "</w>\")");
    impl.byte_id[b] = it->second;
    impl.byte_eow_id[b] = eow->second;
  }

  const std::string merges_path = dir + "/merges.txt";
  const std::string merges_text = read_file(merges_path);
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_text.size();) {
    size_t end = merges_text.find('\n', pos);
    if (end == std::string::npos) end = merges_text.size();
    std::string_view line(merges_text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && line.starts_with("#")) continue;  // "#version: 0.2"
    if (line.empty()) {
      // Only blank lines at the very end are allowed (transformers strips the file).
      FLUX_CHECK(merges_text.find_first_not_of("\r\n", pos) == std::string::npos, "file ", merges_path, " line ",
                 line_no, ": expected \"left right\", got an empty line");
      break;
    }
    const size_t space = line.find(' ');
    const bool two_parts = space != std::string_view::npos && space > 0 && space + 1 < line.size() &&
                           line.find(' ', space + 1) == std::string_view::npos;
    FLUX_CHECK(two_parts, "file ", merges_path, " line ", line_no, ": expected \"left right\" (two symbols), got \"",
               line, "\"");
    const std::string left(line.substr(0, space)), right(line.substr(space + 1));
    auto l = vocab.find(left), r = vocab.find(right), m = vocab.find(left + right);
    FLUX_CHECK(l != vocab.end() && r != vocab.end() && m != vocab.end(), "file ", merges_path, " line ", line_no,
               ": \"", line, "\": symbol ",
               (l == vocab.end()   ? left
                : r == vocab.end() ? right
                                   : left + right),
               " is not in vocab.json");
    FLUX_CHECK(impl.merges.add(l->second, r->second, m->second), "file ", merges_path, " line ", line_no, ": \"", line,
               "\" repeats an earlier merge");
  }
  FLUX_CHECK(impl.merges.size() > 0, "file ", merges_path, ": expected BPE merges, got none");
  return tok;
}

std::vector<int32_t> ClipTokenizer::encode_content(std::string_view text) const {
  const std::u32string chars = text::decode_utf8(text);
  std::vector<int32_t> ids;
  ids.reserve(chars.size() / 3 + 8);
  // HF splits the raw text at its special tokens before any clean-up; each piece is cleaned on its own.
  size_t pos = 0;
  while (pos <= chars.size()) {
    const size_t s = chars.find(kStartOfText, pos), e = chars.find(kEndOfText, pos);
    const size_t next = std::min(s, e);
    impl_->encode_piece(std::u32string_view(chars).substr(pos, next == std::u32string::npos ? next : next - pos), ids);
    if (next == std::u32string::npos) break;
    ids.push_back(next == s ? kBos : kEos);
    pos = next + (next == s ? kStartOfText.size() : kEndOfText.size());
  }
  return ids;
}

ClipTokens ClipTokenizer::encode(std::string_view text, int max_length) const {
  FLUX_CHECK(max_length >= 2, "CLIP tokenizer: max_length: expected >= 2 (BOS and EOS), got ", max_length);
  const std::vector<int32_t> content = encode_content(text);
  ClipTokens tokens;
  tokens.untruncated_len = static_cast<int>(content.size()) + 2;
  tokens.ids.reserve(max_length);
  tokens.ids.push_back(kBos);
  const size_t keep = std::min(content.size(), static_cast<size_t>(max_length - 2));
  tokens.ids.insert(tokens.ids.end(), content.begin(), content.begin() + static_cast<ptrdiff_t>(keep));
  tokens.ids.push_back(kEos);
  tokens.ids.resize(max_length, kEos);  // FLUX's CLIP pad token is <|endoftext|>
  for (size_t i = 0; i < tokens.ids.size(); ++i) {
    if (tokens.ids[i] == kEos) {
      tokens.pool_index = static_cast<int>(i);
      break;
    }
  }
  return tokens;
}

void ClipTokenizer::clear_cache() const {
  std::unique_lock lock(impl_->cache_mutex);
  impl_->cache.clear();
}

}  // namespace flux
