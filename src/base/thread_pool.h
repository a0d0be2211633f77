// The kernel thread pool. parallel_for splits [0, n) into chunks that the pool's threads (the caller among
// them) take from a shared counter; it returns when every chunk is done. One job runs at a time (a second
// caller waits); a parallel_for called from inside a job runs serially.
//
// The threads are OpenMP's. oneDNN (Debian's build) runs on OpenMP too, and two pools on the same cores
// fight: an OpenMP team spins for milliseconds after each oneDNN call while our own workers wait for the
// cores (measured: a small generation ran 8x slower). One set of threads serves both.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

namespace flux {

// Lowers the calling thread's scheduling priority (nice +10 and SCHED_BATCH on Linux), so compute never
// delays the I/O thread. Returns false if the OS refused.
bool lower_current_thread_priority();

class ThreadPool {
 public:
  struct Options {
    int n_threads = 0;          // total threads including the caller; 0 = hardware cores
    bool low_priority = false;  // pool threads call lower_current_thread_priority() (the caller too)
  };

  explicit ThreadPool(Options options);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return n_threads_; }
  bool low_priority() const { return low_priority_; }

  // fn(begin, end) over chunks of at least `grain` items covering [0, n).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);
  // Makes OpenMP regions started by the calling thread outside parallel_for (oneDNN's) use this pool's
  // thread count and priority. Cheap; kernels call it before each oneDNN primitive.
  void adopt_caller() const;

 private:
  int n_threads_ = 1;
  bool low_priority_ = false;
  std::mutex job_mutex_;  // one job at a time
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
