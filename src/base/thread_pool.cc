#include "base/thread_pool.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

namespace flux {
namespace {

thread_local bool t_in_job = false;

std::mutex g_default_mutex;
std::unique_ptr<ThreadPool> g_default;
ThreadPool::Options g_default_options;

}  // namespace

bool lower_current_thread_priority() {
  bool ok = true;
  sched_param param{};
  param.sched_priority = 0;
  if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) ok = false;  // 0 = calling thread on Linux
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 10) != 0) ok = false;
  return ok;
}

int hardware_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(Options options) {
  const int total = options.n_threads > 0 ? options.n_threads : hardware_threads();
  for (int i = 1; i < total; ++i) {
    workers_.emplace_back([this, i, low = options.low_priority] {
      if (low) lower_current_thread_priority();
      worker_loop(i);
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
  const bool was_in_job = t_in_job;
  t_in_job = true;
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= n_chunks_) break;
    const int64_t begin = c * chunk_;
    (*fn_)(begin, std::min(n_, begin + chunk_));
  }
  t_in_job = was_in_job;
}

void ThreadPool::worker_loop(int /*index*/) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    run_chunks();
    {
      std::lock_guard lock(mutex_);
      if (--n_active_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (t_in_job || workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard job_lock(job_mutex_);
  // About 4 chunks per thread balances uneven rows without much counter traffic.
  const int64_t target_chunks = static_cast<int64_t>(n_threads()) * 4;
  const int64_t chunk = std::max(grain, (n + target_chunks - 1) / target_chunks);
  {
    std::lock_guard lock(mutex_);
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    n_chunks_ = (n + chunk - 1) / chunk;
    next_chunk_.store(0, std::memory_order_relaxed);
    n_active_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  run_chunks();
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return n_active_ == 0; });
  fn_ = nullptr;
}

ThreadPool& default_pool() {
  std::lock_guard lock(g_default_mutex);
  if (!g_default) g_default = std::make_unique<ThreadPool>(g_default_options);
  return *g_default;
}

void set_default_threads(int n_threads, bool low_priority) {
  std::lock_guard lock(g_default_mutex);
  g_default_options.n_threads = n_threads;
  g_default_options.low_priority = low_priority;
  g_default.reset();
  g_default = std::make_unique<ThreadPool>(g_default_options);
}

}  // namespace flux
