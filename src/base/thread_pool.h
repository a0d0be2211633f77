// The kernel thread pool. parallel_for splits [0, n) into chunks that the pool's threads (the caller among
// them) take from a shared counter; it returns when every chunk is done. One job runs at a time (a second
// caller waits); a parallel_for called from inside a job runs serially.
//
// The threads are OpenMP's. oneDNN (Debian's build) runs on OpenMP too, and two pools on the same cores
// fight: an OpenMP team spins for milliseconds after each oneDNN call while our own workers wait for the
// cores (measured: a small generation ran 8x slower). One set of threads serves both.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace flux {

// The nice value of compute threads.
inline constexpr int kComputeNice = 10;

// Lowers the calling thread's scheduling priority (nice kComputeNice and SCHED_BATCH on Linux), so compute
// never delays the I/O thread. Returns false if the OS refused.
bool lower_current_thread_priority();

// Puts the calling thread in the real-time class (SCHED_FIFO at the lowest priority, 1): woken, it runs at once,
// ahead of every normal thread of every process. For a thread that does little work per wake-up (the server's
// I/O thread). Why nice and SCHED_BATCH on the compute threads are not enough: they order the threads inside one
// scheduling group only; with autogroups (one group per session) or cgroups the kernel first shares the cores
// between groups, and the process's group, kept busy by its compute threads, then waits out another process's
// time slice (measured here: 1.4 ms slices, noticed at 4 ms ticks, stalls of up to 5.4 ms).
// Threads the caller starts later get the normal policy (SCHED_RESET_ON_FORK). Needs CAP_SYS_NICE or an
// RLIMIT_RTPRIO of at least 1 (a lower soft limit is raised to the hard one). Returns false, errno set, if the OS
// refused; the thread's policy is then unchanged.
bool raise_current_thread_to_realtime();
// With autogroups (CONFIG_SCHED_AUTOGROUP, on unless /proc/sys/kernel/sched_autogroup_enabled is 0, and used for
// processes outside cgroups of their own) the kernel shares the cores between sessions first: a thread's nice
// then counts only against the threads of its own session, so compute at nice 10 still takes a full share from
// every other process (a local client, a proxy, a shell waits for a core like the I/O thread did). Gives the
// calling process's autogroup the nice `nice` (raising a nice needs no privilege), but only when the process
// leads its session, so that the group holds nobody else (not the shell that started it). Returns false, nothing
// changed, otherwise. Call it only when the latency-sensitive threads are real-time: they would be lowered too.
bool lower_own_autogroup(int nice);
// The calling thread's policy as "other", "batch", "idle", "fifo", "rr" (with " nice N" for the first three),
// for logs and tests.
std::string current_thread_scheduling();

// A mutex with priority inheritance (PTHREAD_PRIO_INHERIT): while a real-time thread (the server's I/O thread)
// waits for it, its holder runs at that thread's priority, so a compute thread preempted while holding it cannot
// keep the I/O thread waiting for a time slice (priority inversion). Uncontended, it costs what std::mutex does.
// Lockable: std::lock_guard, std::unique_lock, std::condition_variable_any.
class PriorityInheritanceMutex {
 public:
  PriorityInheritanceMutex();
  ~PriorityInheritanceMutex();
  PriorityInheritanceMutex(const PriorityInheritanceMutex&) = delete;
  PriorityInheritanceMutex& operator=(const PriorityInheritanceMutex&) = delete;
  void lock();
  bool try_lock();
  void unlock();

 private:
  pthread_mutex_t mutex_;
};

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
