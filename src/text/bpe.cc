// Byte-level BPE merging: the plain reference algorithm and an O(n log n) twin for long words.
#include "text/bpe.h"

#include <queue>
#include <tuple>

namespace flux::text {

std::array<char32_t, 256> byte_to_char() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (unsigned b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? b : next++;
  }
  return map;
}

bool BpeMerges::add(int32_t left, int32_t right, int32_t merged) {
  const auto rank = static_cast<int32_t>(table_.size());
  if (!table_.emplace(key(left, right), Merge{rank, merged}).second) return false;
  // Ordered: no merge produces a symbol that an earlier merge already used as a part.
  if (used_.count(merged) != 0) ordered_ = false;
  used_.insert(left);
  used_.insert(right);
  return true;
}

void BpeMerges::merge_word_plain(std::vector<int32_t>& word) const {
  while (word.size() > 1) {
    const Merge* best = nullptr;
    int32_t best_left = 0, best_right = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const Merge* m = find(word[i], word[i + 1]);
      if (m && (!best || m->rank < best->rank)) best = m, best_left = word[i], best_right = word[i + 1];
    }
    if (!best) break;
    size_t out = 0;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == best_left && word[i + 1] == best_right) {
        word[out++] = best->merged;
        i += 2;
      } else {
        word[out++] = word[i++];
      }
    }
    word.resize(out);
  }
}

void BpeMerges::merge_word_fast(std::vector<int32_t>& word) const {
  if (!ordered_) {
    merge_word_plain(word);
    return;
  }
  // With ordered merges a merge never creates a pair of lower rank than its own, so popping (rank, position)
  // in order merges each rank's occurrences left to right before any higher rank, as the plain loop does.
  const auto n = static_cast<int32_t>(word.size());
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  using Entry = std::tuple<int32_t, int32_t, int32_t, int32_t>;  // rank, position, left id, right id
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const Merge* m = find(word[pos], word[next[pos]])) queue.emplace(m->rank, pos, word[pos], word[next[pos]]);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> alive(n, true);
  while (!queue.empty()) {
    const auto [rank, pos, left, right] = queue.top();
    queue.pop();
    const int32_t nxt = next[pos];
    if (!alive[pos] || nxt < 0 || word[pos] != left || word[nxt] != right) continue;  // stale entry
    word[pos] = find(left, right)->merged;
    alive[nxt] = false;
    next[pos] = next[nxt];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    push(prev[pos]);
    push(pos);
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) word[out++] = word[i];
  word.resize(out);
}

}  // namespace flux::text
