#include "text/test_tokenizers.h"

#include <sentencepiece_trainer.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/error.h"
#include "text/bpe.h"
#include "text/unicode_text.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxMerges = 2000;
constexpr int kT5Pieces = 600;  // the unigram trainer's target; hard_vocab_limit=false lets it take fewer
constexpr const char* kMarker = "fluxcpp_test_tokenizer";

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  FLUX_CHECK(out, "file ", path.string(), ": cannot create");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  FLUX_CHECK(out, "file ", path.string(), ": write error");
}

std::string readme(const char* what) {
  return str_cat("TEST TOKENIZER made by fluxcpp (write_test_tokenizers): ", what,
                 " learned from a short built-in English text.\n"
                 "It lets the pipeline run without the real FLUX.1 tokenizer files; its ids differ from the real\n"
                 "tokenizer's, so use it only with random-weight test models.\n");
}

// Each byte's symbol in CLIP's vocab.json (text::byte_to_char, GPT-2's bytes_to_unicode) as UTF-8.
std::array<std::string, 256> byte_symbols() {
  const std::array<char32_t, 256> chars = text::byte_to_char();
  std::array<std::string, 256> out;
  for (unsigned b = 0; b < 256; ++b) text::append_utf8(chars[b], out[b]);
  return out;
}

// CLIP's pre-tokenisation on plain ASCII lower-case text: letter runs, single digits, runs of other
// non-space characters. Returns each word's frequency.
std::map<std::string, int> count_words(std::string_view corpus) {
  std::map<std::string, int> words;
  size_t i = 0;
  auto kind = [](unsigned char c) { return std::isalpha(c) ? 1 : std::isdigit(c) ? 2 : std::isspace(c) ? 0 : 3; };
  while (i < corpus.size()) {
    const int k = kind(static_cast<unsigned char>(corpus[i]));
    size_t j = i + 1;
    if (k == 1 || k == 3)
      while (j < corpus.size() && kind(static_cast<unsigned char>(corpus[j])) == k) ++j;
    if (k != 0) {
      std::string w(corpus.substr(i, j - i));
      for (char& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      ++words[w];
    }
    i = j;
  }
  return words;
}

struct BpeModel {
  std::vector<std::pair<std::string, std::string>> merges;
};

// Learns merges the classic way: repeatedly join the most frequent adjacent pair (ties: the smallest pair in
// byte order, so the result is deterministic) until no pair occurs twice or kMaxMerges are learned.
BpeModel learn_bpe(std::string_view corpus) {
  const auto symbols = byte_symbols();
  struct Word {
    std::vector<std::string> parts;
    int count;
  };
  std::vector<Word> words;
  for (const auto& [w, n] : count_words(corpus)) {
    Word word{{}, n};
    for (unsigned char c : w) word.parts.push_back(symbols[c]);
    word.parts.back() += "</w>";
    words.push_back(std::move(word));
  }
  BpeModel model;
  while (static_cast<int>(model.merges.size()) < kMaxMerges) {
    std::map<std::pair<std::string, std::string>, int> pairs;
    for (const Word& w : words)
      for (size_t i = 0; i + 1 < w.parts.size(); ++i) pairs[{w.parts[i], w.parts[i + 1]}] += w.count;
    auto best = pairs.end();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (best == pairs.end() || it->second > best->second) best = it;
    if (best == pairs.end() || best->second < 2) break;
    const auto [left, right] = best->first;
    model.merges.emplace_back(left, right);
    for (Word& w : words) {
      std::vector<std::string> joined;
      for (size_t i = 0; i < w.parts.size(); ++i) {
        if (i + 1 < w.parts.size() && w.parts[i] == left && w.parts[i + 1] == right) {
          joined.push_back(left + right);
          ++i;
        } else {
          joined.push_back(w.parts[i]);
        }
      }
      w.parts = std::move(joined);
    }
  }
  return model;
}

void write_clip(const fs::path& dir) {
  fs::create_directories(dir);
  const auto symbols = byte_symbols();
  const BpeModel bpe = learn_bpe(text::test_corpus());
  nlohmann::ordered_json vocab;
  int id = 0;
  for (const std::string& s : symbols) vocab[s] = id++;
  for (const std::string& s : symbols) vocab[s + "</w>"] = id++;
  std::string merges = "#version: 0.2\n";
  for (const auto& [l, r] : bpe.merges) {
    if (!vocab.contains(l + r)) vocab[l + r] = id++;
    merges += l + " " + r + "\n";
  }
  vocab["<|startoftext|>"] = 49406;  // CLIP-L's ids: the text model pools at <|endoftext|>
  vocab["<|endoftext|>"] = 49407;
  write_file(dir / "vocab.json", vocab.dump());
  write_file(dir / "merges.txt", merges);
  write_file(dir / "tokenizer_config.json", nlohmann::ordered_json{{kMarker, true},
                                                                   {"model_max_length", 77},
                                                                   {"bos_token", "<|startoftext|>"},
                                                                   {"eos_token", "<|endoftext|>"},
                                                                   {"pad_token", "<|endoftext|>"}}
                                                .dump(2));
  write_file(dir / "README.txt", readme("a byte-level BPE vocabulary and merges"));
}

// Feeds the corpus to the trainer a line at a time.
class CorpusLines : public sentencepiece::SentenceIterator {
 public:
  explicit CorpusLines(std::string_view text) : text_(text) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    if (pos_ >= text_.size()) {
      done_ = true;
      return;
    }
    size_t end = text_.find('\n', pos_);
    if (end == std::string_view::npos) end = text_.size();
    line_ = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
  }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  std::string line_;
  bool done_ = false;
};

void write_t5(const fs::path& dir) {
  fs::create_directories(dir);
  CorpusLines lines(text::test_corpus());
  std::string model;
  // T5's special ids; no BOS. Deterministic: one thread, no sentence sampling or shuffling.
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(kT5Pieces)},
      {"hard_vocab_limit", "false"},
      {"pad_id", "0"},
      {"eos_id", "1"},
      {"unk_id", "2"},
      {"bos_id", "-1"},
      {"pad_piece", "<pad>"},
      {"eos_piece", "</s>"},
      {"unk_piece", "<unk>"},
      {"num_threads", "1"},
      {"character_coverage", "1.0"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"minloglevel", "2"},
      {"model_prefix", ""},
  };
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
  FLUX_CHECK(status.ok(), "test tokenizer: the SentencePiece trainer failed: ", status.ToString());
  write_file(dir / "spiece.model", model);
  write_file(
      dir / "tokenizer_config.json",
      nlohmann::ordered_json{
          {kMarker, true}, {"eos_token", "</s>"}, {"pad_token", "<pad>"}, {"unk_token", "<unk>"}, {"extra_ids", 100}}
          .dump(2));
  write_file(dir / "README.txt", readme("a SentencePiece unigram model"));
}

}  // namespace

void write_test_tokenizers(const std::string& dir) {
  write_clip(fs::path(dir) / "clip-l");
  write_t5(fs::path(dir) / "t5");
}
void write_test_clip_tokenizer(const std::string& dir) { write_clip(dir); }
void write_test_t5_tokenizer(const std::string& dir) { write_t5(dir); }

bool is_test_tokenizer_dir(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "tokenizer_config.json");
  if (!in) return false;
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return false;
  const auto it = config.find(kMarker);
  return it != config.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace flux
