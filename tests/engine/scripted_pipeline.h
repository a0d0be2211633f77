// Test doubles for the engine: a Pipeline whose steps are released one by one by the test (a latch the test
// controls; no sleeps), which honours its stop token, and an executor the test thread drains itself.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <vector>

#include "engine/engine.h"
#include "pipeline/pipeline.h"

namespace flux::test {

// Permits handed out by the test; acquire() blocks until one is available or the stop token fires.
class Gate {
 public:
  void release(int n = 1) {
    {
      std::lock_guard lock(mutex_);
      permits_ += n;
    }
    cv_.notify_all();
  }
  void open() { release(1 << 30); }
  bool acquire(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait(lock, stop, [&] { return permits_ > 0; })) return false;
    --permits_;
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable_any cv_;
  int permits_ = 0;
};

// Scripted pipeline: each denoising step waits for a permit of `steps`; emits encode_text, one event per step
// (with a tiny preview when asked) and decode; throws Cancelled when stopped. validate() refuses empty prompts
// and sizes that are not multiples of 16.
class ScriptedPipeline : public Pipeline {
 public:
  explicit ScriptedPipeline(std::shared_ptr<Gate> steps) : steps_(std::move(steps)) {}
  Variant variant() const override { return Variant::schnell; }
  std::string describe() const override { return "scripted test pipeline"; }
  void validate(const GenerateRequest& r) const override {
    FLUX_CHECK(!r.prompt.empty(), "prompt: expected a non-empty string");
    FLUX_CHECK(r.width % 16 == 0 && r.height % 16 == 0, "size: expected multiples of 16, got ", r.width, "x", r.height);
  }
  // The memory state names where run() is ("idle" after load, the stage while running, "done" after), so a
  // test sees when the engine's snapshot was taken. Read by the engine on the thread running run().
  MemoryStatus memory_status() const override {
    MemoryStatus m;
    m.budget = 12345;
    m.plan = "scripted";
    m.resident = {where_};
    return m;
  }
  GenerateResult run(const GenerateRequest& r, const ProgressSink& progress, std::stop_token stop) override {
    runs_.fetch_add(1);
    where_ = "encode_text";
    last_width_ = r.width;
    const int total = r.steps > 0 ? r.steps : 4;
    if (progress) progress({Stage::encode_text, 0, 0, 0.0, std::nullopt});
    for (int i = 1; i <= total; ++i) {
      where_ = "denoise";
      if (!steps_->acquire(stop)) throw Cancelled();
      ProgressEvent e{Stage::denoise, i, total, 0.01 * i, std::nullopt};
      if (r.preview) e.preview = Image{2, 2, std::vector<uint8_t>(12, static_cast<uint8_t>(i))};
      if (progress) progress(e);
    }
    if (stop.stop_requested()) throw Cancelled();
    where_ = "decode";
    if (progress) progress({Stage::decode, total, total, 0.01 * total, std::nullopt});
    where_ = "done";
    GenerateResult result;
    result.image =
        Image{r.width, r.height,
              std::vector<uint8_t>(static_cast<size_t>(r.width) * r.height * 3, static_cast<uint8_t>(r.seed))};
    result.seed = r.seed;
    result.steps = total;
    result.timings.total_s = 0.01 * total;
    return result;
  }
  int runs() const { return runs_.load(); }
  int last_width() const { return last_width_.load(); }

 private:
  std::shared_ptr<Gate> steps_;
  std::atomic<int> runs_{0};
  std::atomic<int> last_width_{0};
  std::string where_ = "idle";
};

// An executor drained by the test thread: Post queues a callable; run_until() runs them until a condition
// holds or a deadline passes.
class TestExecutor {
 public:
  Post post() {
    return [this](std::function<void()> fn) {
      {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(fn));
      }
      cv_.notify_all();
    };
  }
  bool run_until(const std::function<bool()>& done, std::chrono::seconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mutex_);
        if (!cv_.wait_until(lock, deadline, [&] { return !queue_.empty(); })) return done();
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
};

// Records the events of one subscription (called on the test thread by TestExecutor).
struct EventRecorder {
  std::vector<std::shared_ptr<const JobEvent>> events;
  EventHandler handler() {
    return [this](std::shared_ptr<const JobEvent> e) { events.push_back(std::move(e)); };
  }
  bool has(JobEventKind kind) const {
    for (const auto& e : events)
      if (e->kind == kind) return true;
    return false;
  }
  std::vector<JobEventKind> kinds() const {
    std::vector<JobEventKind> k;
    for (const auto& e : events) k.push_back(e->kind);
    return k;
  }
};

}  // namespace flux::test
