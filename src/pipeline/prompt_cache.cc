#include "pipeline/prompt_cache.h"

#include <cstring>
#include <exception>
#include <utility>

namespace flux {

PromptKey PromptKey::of_text(std::string prompt, int t5_len) { return PromptKey{"t:" + std::move(prompt), t5_len}; }

PromptKey PromptKey::of_ids(std::span<const int32_t> clip_ids, std::span<const int32_t> t5_ids) {
  // "i:" + n_clip + clip ids + t5 ids, raw bytes: the prefix keeps ids and texts apart.
  const uint32_t n_clip = static_cast<uint32_t>(clip_ids.size());
  std::string bytes = "i:";
  bytes.append(reinterpret_cast<const char*>(&n_clip), sizeof n_clip);
  bytes.append(reinterpret_cast<const char*>(clip_ids.data()), clip_ids.size_bytes());
  bytes.append(reinterpret_cast<const char*>(t5_ids.data()), t5_ids.size_bytes());
  return PromptKey{std::move(bytes), static_cast<int>(t5_ids.size())};
}

struct PromptCache::Pending {
  bool done = false;
  Entry value;
  std::exception_ptr error;
  std::condition_variable cv;
};

PromptCache::PromptCache(size_t capacity) : capacity_(capacity) {}

PromptCache::Entry PromptCache::get(const PromptKey& key) {
  std::lock_guard lock(mutex_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);  // now the most recent
  return it->second->value;
}

void PromptCache::insert_locked(const PromptKey& key, Entry value) {
  if (capacity_ == 0) return;
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->value = std::move(value);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(Slot{key, std::move(value)});
  index_.emplace(key, lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

void PromptCache::put(const PromptKey& key, PromptEmbedding value) {
  auto entry = std::make_shared<const PromptEmbedding>(std::move(value));
  std::lock_guard lock(mutex_);
  insert_locked(key, std::move(entry));
}

PromptCache::Entry PromptCache::get_or_compute(const PromptKey& key, const std::function<PromptEmbedding()>& encode) {
  std::shared_ptr<Pending> pending;
  uint64_t generation = 0;
  {
    std::unique_lock lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) {
      ++hits_;
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->value;
    }
    if (auto it = pending_.find(key); it != pending_.end()) {
      // Another thread is encoding this prompt: wait for its result.
      ++hits_;
      std::shared_ptr<Pending> other = it->second;
      other->cv.wait(lock, [&] { return other->done; });
      if (other->error) std::rethrow_exception(other->error);
      return other->value;
    }
    ++misses_;
    pending = std::make_shared<Pending>();
    pending_.emplace(key, pending);
    generation = generation_;
  }

  Entry value;
  std::exception_ptr error;
  try {
    value = std::make_shared<const PromptEmbedding>(encode());  // outside the lock
  } catch (...) {
    error = std::current_exception();
  }

  std::lock_guard lock(mutex_);
  if (auto it = pending_.find(key); it != pending_.end() && it->second == pending) pending_.erase(it);
  pending->done = true;
  pending->value = value;
  pending->error = error;
  if (!error && generation == generation_) insert_locked(key, value);
  pending->cv.notify_all();
  if (error) std::rethrow_exception(error);
  return value;
}

void PromptCache::clear() {
  std::lock_guard lock(mutex_);
  lru_.clear();
  index_.clear();
  pending_.clear();  // their encoders finish, but store nothing
  ++generation_;
}

size_t PromptCache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

size_t PromptCache::bytes() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const Slot& s : lru_) n += s.value->pooled.nbytes() + s.value->txt.nbytes();
  return n;
}

uint64_t PromptCache::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

uint64_t PromptCache::misses() const {
  std::lock_guard lock(mutex_);
  return misses_;
}

}  // namespace flux
