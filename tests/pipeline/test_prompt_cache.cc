// PromptCache: hits and misses, LRU eviction order, the capacity bound, one encode per prompt (also under
// concurrency), failures not cached, keys by text vs by ids vs T5 length.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pipeline/prompt_cache.h"
#include "test_util.h"

namespace flux {
namespace {

// An embedding whose values identify it: pooled = [tag], txt = [t5_len, 2] filled with tag.
PromptEmbedding make(float tag, int t5_len = 4) {
  PromptEmbedding e;
  e.pooled = Tensor::from_f32({1}, std::vector<float>{tag});
  e.txt = Tensor::from_f32({t5_len, 2}, std::vector<float>(static_cast<size_t>(t5_len) * 2, tag));
  return e;
}

float tag_of(const PromptCache::Entry& e) { return e->pooled.data<float>()[0]; }

TEST(PromptCache, HitAndMiss) {
  PromptCache cache(4);
  const PromptKey cat = PromptKey::of_text("a cat", 256);
  EXPECT_EQ(cache.get(cat), nullptr);
  cache.put(cat, make(1));
  ASSERT_NE(cache.get(cat), nullptr);
  EXPECT_EQ(tag_of(cache.get(cat)), 1.0f);
  EXPECT_EQ(cache.get(PromptKey::of_text("a cat", 512)), nullptr);  // the T5 length is part of the key
  EXPECT_EQ(cache.get(PromptKey::of_text("a dog", 256)), nullptr);
  EXPECT_EQ(cache.hits(), 2u);
  EXPECT_EQ(cache.misses(), 3u);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), (1 + 4 * 2) * sizeof(float));
}

TEST(PromptCache, EvictsLeastRecentlyUsed) {
  PromptCache cache(3);
  for (int i = 0; i < 3; ++i) cache.put(PromptKey::of_text(std::to_string(i), 256), make(static_cast<float>(i)));
  EXPECT_NE(cache.get(PromptKey::of_text("0", 256)), nullptr);  // 0 is now the most recent: 1 is the oldest
  cache.put(PromptKey::of_text("3", 256), make(3));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.get(PromptKey::of_text("1", 256)), nullptr);
  EXPECT_NE(cache.get(PromptKey::of_text("0", 256)), nullptr);
  EXPECT_NE(cache.get(PromptKey::of_text("2", 256)), nullptr);
  EXPECT_NE(cache.get(PromptKey::of_text("3", 256)), nullptr);
  // Order now (recent first): 3, 2, 0 -> adding two more evicts 0 then 2.
  cache.put(PromptKey::of_text("4", 256), make(4));
  EXPECT_EQ(cache.get(PromptKey::of_text("0", 256)), nullptr);
  cache.put(PromptKey::of_text("5", 256), make(5));
  EXPECT_EQ(cache.get(PromptKey::of_text("2", 256)), nullptr);
  EXPECT_NE(cache.get(PromptKey::of_text("3", 256)), nullptr);
}

TEST(PromptCache, CapacityBoundAndReplace) {
  PromptCache cache(5);
  for (int i = 0; i < 50; ++i) {
    cache.put(PromptKey::of_text(std::to_string(i), 256), make(static_cast<float>(i)));
    EXPECT_LE(cache.size(), 5u);
  }
  EXPECT_EQ(cache.size(), 5u);
  const PromptKey k = PromptKey::of_text("49", 256);
  const PromptCache::Entry old = cache.get(k);
  cache.put(k, make(100));
  EXPECT_EQ(cache.size(), 5u);
  EXPECT_EQ(tag_of(cache.get(k)), 100.0f);
  EXPECT_EQ(tag_of(old), 49.0f);  // a reader's entry outlives its replacement
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.get(k), nullptr);

  PromptCache none(0);
  none.put(k, make(1));
  EXPECT_EQ(none.size(), 0u);
  int calls = 0;
  none.get_or_compute(k, [&] { return ++calls, make(1); });
  none.get_or_compute(k, [&] { return ++calls, make(1); });
  EXPECT_EQ(calls, 2);
}

TEST(PromptCache, KeysByIds) {
  const std::vector<int32_t> clip = {49406, 320, 49407}, t5 = {5, 1, 0, 0};
  const PromptKey a = PromptKey::of_ids(clip, t5);
  EXPECT_EQ(a.t5_len, 4);
  EXPECT_EQ(a, PromptKey::of_ids(clip, t5));
  const std::vector<int32_t> clip2 = {49406, 321, 49407};
  EXPECT_NE(a, PromptKey::of_ids(clip2, t5));
  const std::vector<int32_t> t5b = {5, 1, 0, 0, 0};
  EXPECT_NE(a, PromptKey::of_ids(clip, t5b));
  // Moving the split between the CLIP and T5 ids changes the key.
  const std::vector<int32_t> c1 = {1, 2}, t1 = {3, 4, 5}, c2 = {1, 2, 3}, t2 = {4, 5};
  EXPECT_NE(PromptKey::of_ids(c1, t1).prompt, PromptKey::of_ids(c2, t2).prompt);
}

TEST(PromptCache, SamePromptEncodedOnce) {
  PromptCache cache(8);
  int calls = 0;
  const PromptKey k = PromptKey::of_text("a photo of a cat", 256);
  const auto encode = [&] { return ++calls, make(7); };
  EXPECT_EQ(tag_of(cache.get_or_compute(k, encode)), 7.0f);
  EXPECT_EQ(tag_of(cache.get_or_compute(k, encode)), 7.0f);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
}

TEST(PromptCache, FailedEncodeIsNotCached) {
  PromptCache cache(8);
  const PromptKey k = PromptKey::of_text("x", 256);
  EXPECT_THROW(cache.get_or_compute(k, []() -> PromptEmbedding { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(tag_of(cache.get_or_compute(k, [] { return make(3); })), 3.0f);
}

TEST(PromptCache, ConcurrentCallersShareOneEncode) {
  PromptCache cache(8);
  std::atomic<int> calls{0};
  const PromptKey k = PromptKey::of_text("shared", 512);
  std::vector<std::thread> threads;
  std::vector<float> seen(6, 0.0f);
  for (size_t t = 0; t < seen.size(); ++t) {
    threads.emplace_back([&, t] {
      seen[t] = tag_of(cache.get_or_compute(k, [&] {
        ++calls;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // others arrive while this runs
        return make(9, 512);
      }));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(calls.load(), 1);
  for (float v : seen) EXPECT_EQ(v, 9.0f);
  EXPECT_EQ(cache.hits() + cache.misses(), seen.size());
  EXPECT_EQ(cache.misses(), 1u);
}

}  // namespace
}  // namespace flux
