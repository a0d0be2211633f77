// Private to src/text: byte-level BPE (GPT-2 / CLIP style) over vocabulary ids.
// A word is a sequence of vocabulary ids, initially one per byte (the last byte's id is its "</w>" form).
// Merging follows transformers' CLIPTokenizer.bpe(): repeatedly take the adjacent pair with the lowest
// merge rank and merge all its occurrences left to right.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace flux::text {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in
// byte order, so every byte has a visible character in vocab.json.
std::array<char32_t, 256> byte_to_char();

class BpeMerges {
 public:
  struct Merge {
    int32_t rank;
    int32_t merged;  // vocabulary id of left+right
  };

  // rank = number of merges added before. False (and nothing added) when the pair is already there.
  bool add(int32_t left, int32_t right, int32_t merged);
  const Merge* find(int32_t left, int32_t right) const {
    auto it = table_.find(key(left, right));
    return it == table_.end() ? nullptr : &it->second;
  }
  size_t size() const { return table_.size(); }
  // True when no merge produces a symbol that an earlier merge used as a part (true of trained BPE merges):
  // then the priority-queue algorithm gives exactly the reference result (see merge_word_fast).
  bool ordered() const { return ordered_; }

  // The reference algorithm: O(n^2) per word, used for short words.
  void merge_word_plain(std::vector<int32_t>& word) const;
  // Same result with a priority queue over a linked list, O(n log n): for long words (a 1 MB input is one
  // word of a million symbols). Falls back to the plain algorithm when !ordered().
  void merge_word_fast(std::vector<int32_t>& word) const;
  void merge_word(std::vector<int32_t>& word) const {
    if (word.size() <= 48) {
      merge_word_plain(word);
    } else {
      merge_word_fast(word);
    }
  }

 private:
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::unordered_map<uint64_t, Merge> table_;
  std::unordered_set<int32_t> used_;  // ids used as the left or right part of a merge
  bool ordered_ = true;
};

}  // namespace flux::text
