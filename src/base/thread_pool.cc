#include "base/thread_pool.h"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "base/error.h"

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
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kComputeNice) != 0) ok = false;
  t_lowered = true;
  return ok;
}

bool raise_current_thread_to_realtime() {
  rlimit limit{};
  if (getrlimit(RLIMIT_RTPRIO, &limit) == 0 && limit.rlim_cur < 1 && limit.rlim_max >= 1) {
    limit.rlim_cur = 1;
    setrlimit(RLIMIT_RTPRIO, &limit);  // unprivileged: up to the hard limit
  }
  sched_param param{};
  param.sched_priority = 1;
  return sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &param) == 0;
}

bool lower_own_autogroup(int nice) {
  if (getsid(0) != getpid()) return false;
  {
    std::ofstream out("/proc/self/autogroup");
    if (!(out << nice << std::flush)) return false;
  }
  // "/autogroup-N nice K"
  std::ifstream in("/proc/self/autogroup");
  std::string group, word;
  int now = 0;
  return static_cast<bool>(in >> group >> word >> now) && now == nice;
}

std::string current_thread_scheduling() {
  const int policy = sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  const std::string nice_text = " nice " + std::to_string(nice);
  switch (policy) {
    case SCHED_OTHER:
      return "other" + nice_text;
    case SCHED_BATCH:
      return "batch" + nice_text;
    case SCHED_IDLE:
      return "idle" + nice_text;
    case SCHED_FIFO:
      return "fifo";
    case SCHED_RR:
      return "rr";
    default:
      return "policy " + std::to_string(policy);
  }
}

PriorityInheritanceMutex::PriorityInheritanceMutex() {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
  const int rc = pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
  FLUX_CHECK(rc == 0, "PriorityInheritanceMutex: pthread_mutex_init failed: ", std::strerror(rc));
}

PriorityInheritanceMutex::~PriorityInheritanceMutex() { pthread_mutex_destroy(&mutex_); }

void PriorityInheritanceMutex::lock() {
  const int rc = pthread_mutex_lock(&mutex_);
  FLUX_CHECK(rc == 0, "PriorityInheritanceMutex: pthread_mutex_lock failed: ", std::strerror(rc));
}

bool PriorityInheritanceMutex::try_lock() { return pthread_mutex_trylock(&mutex_) == 0; }

void PriorityInheritanceMutex::unlock() { pthread_mutex_unlock(&mutex_); }

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
