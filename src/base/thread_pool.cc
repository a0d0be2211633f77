#include "base/thread_pool.h"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

namespace flux {
namespace {

thread_local bool t_lowered = false;

std::mutex g_default_mutex;
std::unique_ptr<ThreadPool> g_default;
ThreadPool::Options g_default_options;

void lower_once() {
  if (!t_lowered) {
    lower_current_thread_priority();
    t_lowered = true;
  }
}

}  // namespace

bool lower_current_thread_priority() {
  bool ok = true;
  sched_param param{};
  param.sched_priority = 0;
  if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) ok = false;  // 0 = calling thread on Linux
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 10) != 0) ok = false;
  t_lowered = true;
  return ok;
}

int hardware_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(Options options)
    : n_threads_(options.n_threads > 0 ? options.n_threads : hardware_threads()), low_priority_(options.low_priority) {}

void ThreadPool::adopt_caller() const {
  if (omp_get_max_threads() != n_threads_) omp_set_num_threads(n_threads_);
  if (low_priority_ && !omp_in_parallel()) {
    lower_once();
    // Lower the OpenMP team of this thread as well (its threads persist across regions).
    static thread_local int lowered_team = 0;
    if (lowered_team != n_threads_) {
#pragma omp parallel num_threads(n_threads_)
      lower_once();
      lowered_team = n_threads_;
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (omp_in_parallel() || n_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard job_lock(job_mutex_);
  adopt_caller();
  // About 4 chunks per thread balances uneven rows without much counter traffic.
  const int64_t target_chunks = static_cast<int64_t>(n_threads_) * 4;
  const int64_t chunk = std::max(grain, (n + target_chunks - 1) / target_chunks);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int team = static_cast<int>(std::min<int64_t>(n_threads_, n_chunks));
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(team)
  {
    if (low_priority_) lower_once();
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      const int64_t begin = c * chunk;
      fn(begin, std::min(n, begin + chunk));
    }
  }
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
  g_default = std::make_unique<ThreadPool>(g_default_options);
}

}  // namespace flux
