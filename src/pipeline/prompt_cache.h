// PromptCache: a bounded, thread-safe LRU of prompt embeddings (CLIP pooled vector + T5 hidden states), so a
// prompt seen again skips both text encoders. Keyed by the prompt (its text, or its token ids) and the T5
// length (256 schnell, 512 dev). Entries are immutable and shared: a reader keeps its entry alive even after
// eviction. get_or_compute() encodes a prompt once even when several threads ask for it at the same time.
// A cache belongs to one loaded pair of text encoders: clear() it when they change.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace flux {

struct PromptEmbedding {
  Tensor pooled;  // F32 [clip hidden]: CLIP pooler_output, FLUX's y / vec
  Tensor txt;     // F32 [t5_len, d_model]: T5 last_hidden_state, FLUX's txt
};

struct PromptKey {
  std::string prompt;  // tagged bytes: "t:" + text (of_text) or "i:" + token ids (of_ids)
  int t5_len = 0;

  static PromptKey of_text(std::string prompt, int t5_len);
  // Ids key: CLIP and T5 ids (t5_len = t5_ids.size()). Never equal to a text key.
  static PromptKey of_ids(std::span<const int32_t> clip_ids, std::span<const int32_t> t5_ids);
  auto operator<=>(const PromptKey&) const = default;
};

class PromptCache {
 public:
  using Entry = std::shared_ptr<const PromptEmbedding>;

  explicit PromptCache(size_t capacity);  // capacity: entries kept (0 = cache nothing)
  PromptCache(const PromptCache&) = delete;
  PromptCache& operator=(const PromptCache&) = delete;

  // The entry (now the most recently used) or nullptr. Counts a hit or a miss.
  Entry get(const PromptKey& key);
  // Inserts or replaces; evicts the least recently used entries beyond capacity.
  void put(const PromptKey& key, PromptEmbedding value);
  // get(), else encode() once and put() its result. Concurrent callers with the same key wait for the
  // first one's result (one encode); if encode() throws, every waiter gets the exception and nothing is stored.
  Entry get_or_compute(const PromptKey& key, const std::function<PromptEmbedding()>& encode);

  void clear();  // drops every entry; encodes in progress are not stored
  size_t size() const;
  size_t capacity() const { return capacity_; }
  size_t bytes() const;  // tensor bytes held
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Slot {
    PromptKey key;
    Entry value;
  };
  struct Pending;  // an encode in progress

  void insert_locked(const PromptKey& key, Entry value);

  const size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Slot> lru_;  // most recently used first
  std::map<PromptKey, std::list<Slot>::iterator> index_;
  std::map<PromptKey, std::shared_ptr<Pending>> pending_;
  uint64_t hits_ = 0, misses_ = 0;
  uint64_t generation_ = 0;  // bumped by clear(): encodes begun before it are not stored
};

}  // namespace flux
