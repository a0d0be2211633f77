// A fixed pool of worker threads for data-parallel kernels. parallel_for splits [0, n) into chunks that the
// workers and the calling thread take from a shared counter; it returns when every chunk is done.
// One job runs at a time (a second caller waits); a parallel_for called from inside a job runs serially.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flux {

// Lowers the calling thread's scheduling priority (nice +10 and SCHED_BATCH on Linux), so compute never
// delays the I/O thread. Returns false if the OS refused.
bool lower_current_thread_priority();

class ThreadPool {
 public:
  struct Options {
    int n_threads = 0;          // total threads including the caller; 0 = hardware cores
    bool low_priority = false;  // workers call lower_current_thread_priority()
  };

  explicit ThreadPool(Options options);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end) over chunks of at least `grain` items covering [0, n).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop(int index);
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  int n_active_ = 0;
  // The current job; written under mutex_ before generation_ changes.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
};

// The process-wide kernel pool, created on first use with set_default_threads()'s value (default: cores).
ThreadPool& default_pool();
// Sets the size (and priority) of the default pool; recreates it if it exists. Not thread-safe with
// respect to running kernels: call at start-up or between jobs.
void set_default_threads(int n_threads, bool low_priority = false);
int hardware_threads();

inline void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1) {
  default_pool().parallel_for(n, fn, grain);
}

}  // namespace flux
