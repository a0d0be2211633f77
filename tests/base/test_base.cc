#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#include <stop_token>
#include <thread>
#include <vector>

#include "base/aligned_buffer.h"
#include "base/cpu.h"
#include "base/error.h"
#include "base/log.h"
#include "base/mapped_file.h"
#include "base/system.h"
#include "base/thread_pool.h"
#include "test_util.h"

namespace flux {
namespace {

TEST(Error, CheckThrowsWithMessage) {
  try {
    FLUX_CHECK(1 + 1 == 3, "tensor ", "x.weight", ": expected ", 3, ", got ", 2);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor x.weight: expected 3, got 2");
  }
  EXPECT_NO_THROW(FLUX_CHECK(true, "never"));
}

TEST(Log, ParsesLevels) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::debug);
  EXPECT_EQ(parse_log_level("off"), LogLevel::off);
  EXPECT_THROW(parse_log_level("loud"), Error);
  const LogLevel old = log_level();
  set_log_level(LogLevel::error);
  EXPECT_EQ(log_level(), LogLevel::error);
  set_log_level(old);
}

TEST(Cpu, CapLowersTheLevel) {
  const IsaLevel best = isa_level();
  EXPECT_EQ(set_cpu_cap(IsaLevel::scalar), best);
  EXPECT_EQ(isa_level(), IsaLevel::scalar);
  EXPECT_FALSE(cpu_features().avx2);
  EXPECT_FALSE(cpu_features().avx512f);
  set_cpu_cap(IsaLevel::avx512);
  EXPECT_EQ(isa_level(), best);
  // Detected features are consistent: AVX-512 sub-features imply the foundation.
  const CpuFeatures& f = cpu_detected();
  if (f.avx512_bf16 || f.avx512bw) {
    EXPECT_TRUE(f.avx512f);
  }
  if (f.avx512f) {
    EXPECT_TRUE(f.avx2);
  }
  EXPECT_FALSE(f.describe().empty());
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  ThreadPool pool({.n_threads = 3, .low_priority = true});
  EXPECT_EQ(pool.n_threads(), 3);
  for (int64_t n : {1, 2, 7, 100, 1001}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "n=" << n;
  }
}

TEST(ThreadPool, NestedCallsRunSerially) {
  ThreadPool pool({.n_threads = 2});
  std::atomic<int64_t> sum{0};
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      default_pool().parallel_for(5, [&](int64_t b2, int64_t e2) { sum += (e2 - b2) * i; });
  });
  EXPECT_EQ(sum.load(), 5 * 45);
}

TEST(ThreadPool, ConcurrentCallersAreSerialised) {
  ThreadPool pool({.n_threads = 2});
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r) pool.parallel_for(97, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 50 * 97);
}

// The scheduling of the calling thread, keyed by its id, collected from inside parallel regions.
class SchedulingLog {
 public:
  void record() {
    std::lock_guard lock(mutex_);
    seen_[static_cast<pid_t>(syscall(SYS_gettid))] = current_thread_scheduling();
  }
  std::map<pid_t, std::string> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<pid_t, std::string> seen_;
};

// DESIGN.md "Threading": compute runs below the I/O thread. Every thread of a low-priority pool is SCHED_BATCH at
// nice 10: the caller, the OpenMP threads of parallel_for, and the team of an OpenMP region that oneDNN starts
// after adopt_caller() (the same threads, or new ones when the team grows).
TEST(ThreadPool, LowPriorityReachesEveryOpenMpThread) {
  SchedulingLog in_onednn_region, in_old_team, in_parallel_for;
  // Threads of their own (lowering is one-way), each with its own OpenMP team, as the engine's loader and compute
  // worker have. The first starts with a oneDNN-style region; the second had a team at normal priority before
  // the pool was used (threads inherit their creator's priority, so only such a team needs lowering); the third
  // starts with parallel_for.
  std::thread onednn_first([&] {
    ThreadPool pool({.n_threads = 3, .low_priority = true});
    pool.adopt_caller();
#pragma omp parallel num_threads(3)
    in_onednn_region.record();
  });
  onednn_first.join();
  std::thread team_before_pool([&] {
    std::atomic<int> members{0};
#pragma omp parallel num_threads(3)
    members++;
    ASSERT_EQ(members.load(), 3);
    ThreadPool pool({.n_threads = 3, .low_priority = true});
    pool.adopt_caller();
#pragma omp parallel num_threads(3)
    in_old_team.record();
  });
  team_before_pool.join();
  std::thread parallel_for_first([&] {
    ThreadPool pool({.n_threads = 3, .low_priority = true});
    pool.parallel_for(
        64,
        [&](int64_t, int64_t) {
          in_parallel_for.record();
          std::this_thread::sleep_for(std::chrono::milliseconds(1));  // every team member gets chunks
        },
        1);
  });
  parallel_for_first.join();
  const auto a = in_onednn_region.seen(), b = in_old_team.seen(), c = in_parallel_for.seen();
  EXPECT_EQ(a.size(), 3u);
  EXPECT_EQ(b.size(), 3u);
  EXPECT_GE(c.size(), 2u);
  for (const auto* seen : {&a, &b, &c})
    for (const auto& [tid, scheduling] : *seen) EXPECT_EQ(scheduling, "batch nice 10") << "thread " << tid;
}

// Real-time when the OS allows it (root, CAP_SYS_NICE, RLIMIT_RTPRIO >= 1), and then a thread it starts has the
// normal policy (SCHED_RESET_ON_FORK); else refused with EPERM and the policy unchanged.
TEST(ThreadPool, RealtimeThreadOrAClearRefusal) {
  std::thread t([] {
    const std::string before = current_thread_scheduling();
    errno = 0;
    const bool realtime = raise_current_thread_to_realtime();
    const int error = errno;
    std::string in_child;
    std::thread child([&] { in_child = current_thread_scheduling(); });
    child.join();
    if (realtime) {
      EXPECT_EQ(current_thread_scheduling(), "fifo");
      EXPECT_EQ(in_child.rfind("other", 0), 0u) << in_child;
    } else {
      EXPECT_EQ(error, EPERM);
      EXPECT_EQ(current_thread_scheduling(), before);
      EXPECT_EQ(in_child, before);
    }
  });
  t.join();
}

TEST(PriorityInheritanceMutex, LocksLikeAMutex) {
  PriorityInheritanceMutex m;
  std::condition_variable_any cv;
  int64_t total = 0;
  bool go = false;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return go; });
      }
      for (int r = 0; r < 10000; ++r) {
        std::lock_guard lock(m);
        ++total;
      }
    });
  {
    std::lock_guard lock(m);
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
  EXPECT_EQ(total, 40000);
  ASSERT_TRUE(m.try_lock());
  std::thread other([&] { EXPECT_FALSE(m.try_lock()); });
  other.join();
  m.unlock();
}

// Field 18 (priority) of /proc/self/task/TID/stat: 20 + nice for normal threads, -1 - rt_priority for real-time.
int kernel_priority(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(in, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));  // from field 3
  std::string v;
  for (int field = 3; field <= 18 && fields >> v; ++field) {
  }
  return std::atoi(v.c_str());
}

// The point of the mutex: a SCHED_BATCH nice-10 holder runs at the real-time priority of the thread waiting for
// it (a std::mutex leaves it at 30 and the real-time thread waits for whatever time slice the holder gets).
TEST(PriorityInheritanceMutex, HolderInheritsTheWaitersRealtimePriority) {
  PriorityInheritanceMutex m;
  std::atomic<pid_t> holder_tid{0};
  std::atomic<bool> waiter_started{false}, waiter_is_realtime{false};
  int boosted = 0, unboosted = 0;
  std::thread holder([&] {
    lower_current_thread_priority();
    m.lock();
    const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    unboosted = kernel_priority(tid);  // before the waiter exists
    holder_tid = tid;
    while (!waiter_started) std::this_thread::yield();
    boosted = unboosted;
    for (int i = 0; i < 2000 && boosted == unboosted && waiter_is_realtime; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      boosted = kernel_priority(tid);
    }
    m.unlock();
  });
  while (holder_tid == 0) std::this_thread::yield();
  std::thread waiter([&] {
    waiter_is_realtime = raise_current_thread_to_realtime();
    waiter_started = true;
    m.lock();  // blocks until the holder lets go
    m.unlock();
  });
  waiter.join();
  holder.join();
  EXPECT_EQ(unboosted, 30);  // nice 10
  if (!waiter_is_realtime) GTEST_SKIP() << "no real-time priority here (needs CAP_SYS_NICE or RLIMIT_RTPRIO)";
  EXPECT_LT(boosted, 0) << "the holder was not boosted to the waiter's real-time priority";
}

// The session's autogroup is lowered only by a process that leads its session (else it would lower its shell).
TEST(ThreadPool, AutogroupLoweredOnlyBySessionLeader) {
  if (getsid(0) != getpid()) {
    EXPECT_FALSE(lower_own_autogroup(kComputeNice));
  }
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setsid() < 0) _exit(3);
    if (!std::ifstream("/proc/self/autogroup")) _exit(2);  // no autogroups in this kernel
    _exit(lower_own_autogroup(kComputeNice) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 2) GTEST_SKIP() << "no /proc/self/autogroup";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(AlignedBuffer, IsAlignedAndGrows) {
  AlignedBuffer b(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  EXPECT_GE(b.size(), 10u);
  b.resize(1000);
  EXPECT_GE(b.size(), 1000u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  AlignedBuffer moved = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_NE(moved.data(), nullptr);
}

// A large buffer is 2 MiB-aligned and advised to transparent huge pages: where the kernel runs THP in "always" or
// "madvise" mode, its touched range is backed by huge pages (AnonHugePages of its mapping in /proc/self/smaps).
TEST(AlignedBuffer, LargeBuffersGetHugePages) {
  AlignedBuffer b(AlignedBuffer::kHugeFrom + 100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kHugePage, 0u);
  EXPECT_EQ(b.size() % AlignedBuffer::kHugePage, 0u);
  b.zero();
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  const std::string modes((std::istreambuf_iterator<char>(thp)), std::istreambuf_iterator<char>());
  if (modes.find("[never]") != std::string::npos || modes.empty()) GTEST_SKIP() << "THP is off here: " << modes;
  // The smaps entry of the mapping that holds the buffer.
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t at = reinterpret_cast<uintptr_t>(b.data());
  std::string line;
  bool inside = false;
  long huge_kb = -1;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = lo <= at && at < hi;
    } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      huge_kb = std::stol(line.substr(14));
      break;
    }
  }
  EXPECT_GE(huge_kb, 2048) << "THP modes: " << modes;
}

TEST(MappedFile, MapsContentsAndNamesMissingFiles) {
  const std::string dir = test::temp_dir("mmap");
  const std::string path = dir + "/f.bin";
  std::ofstream(path, std::ios::binary) << "hello fluxcpp";
  auto file = MappedFile::open(path);
  ASSERT_EQ(file->size(), 13u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file->data()), file->size()), "hello fluxcpp");
  file->prefetch(0, 13);
  try {
    MappedFile::open(dir + "/missing.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos);
  }
  EXPECT_THROW(MappedFile::open(dir), Error);  // a directory
}

// A prepacked Linear releases the mapped pages it copied: they leave RssFile, read back the same from the page
// cache, and nothing outside a live mapping is ever advised (MADV_DONTNEED would zero owned memory).
TEST(MappedFile, ReleasedPagesLeaveTheRssAndReadBackTheSame) {
  const std::string path = test::temp_dir("mmap-release") + "/w.bin";
  constexpr size_t kBytes = size_t{64} << 20;
  {
    std::vector<uint8_t> data(kBytes);
    for (size_t i = 0; i < kBytes; ++i) data[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), kBytes);
  }
  auto file = MappedFile::open(path);
  auto checksum = [&] {
    uint64_t sum = 0;
    for (size_t i = 0; i < kBytes; i += 64) sum = sum * 31 + file->data()[i];
    return sum;
  };
  const uint64_t before = file_memory_bytes();
  const uint64_t sum = checksum();  // every page touched
  const uint64_t touched = file_memory_bytes();
  ASSERT_GT(touched, before + (kBytes / 2)) << "the pages read count in RssFile";
  // Not page-aligned at either end: the whole pages inside are released.
  const size_t released = release_file_pages(file->data() + 100, kBytes - 200);
  EXPECT_GE(released, kBytes - 3 * 4096);
  EXPECT_LE(released, kBytes);
  EXPECT_LT(file_memory_bytes(), touched - kBytes / 2) << "released pages left RssFile";
  EXPECT_EQ(checksum(), sum) << "released pages read back from the file";

  std::vector<uint8_t> owned(size_t{1} << 20, 7);
  EXPECT_EQ(release_file_pages(owned.data(), owned.size()), 0u);
  EXPECT_EQ(std::count(owned.begin(), owned.end(), 7), static_cast<std::ptrdiff_t>(owned.size()));
  EXPECT_EQ(release_file_pages(file->data() + kBytes - 8192, 16384), 0u) << "past the mapping's end";
  const uint8_t* gone = file->data();
  file.reset();
  EXPECT_EQ(release_file_pages(gone, kBytes), 0u) << "an unmapped range";
}

// The share of [data, data + bytes) the page cache holds (mincore on a file mapping reports the page cache).
double cached_fraction(const uint8_t* data, size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((bytes + page - 1) / page);
  if (::mincore(const_cast<uint8_t*>(data), bytes, in.data()) != 0) return -1;
  return static_cast<double>(std::count_if(in.begin(), in.end(), [](unsigned char c) { return c & 1; })) /
         static_cast<double>(in.size());
}

// With set_evict_released_pages(true) the released pages also leave the page cache (so the files still read per
// call keep theirs); without it they stay cached for the next reader.
TEST(MappedFile, ReleasedPagesLeaveThePageCacheOnlyWhenEvictionIsOn) {
  const std::string path = test::temp_dir("mmap-evict") + "/w.bin";
  constexpr size_t kBytes = size_t{32} << 20;
  {
    std::vector<uint8_t> data(kBytes, 0x5a);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), kBytes);
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::fsync(fd);  // dirty pages are never dropped: written back first
    ::close(fd);
  }
  for (const bool evict : {false, true}) {
    auto file = MappedFile::open(path);
    uint64_t sum = 0;
    for (size_t i = 0; i < kBytes; i += 4096) sum += file->data()[i];
    ASSERT_EQ(sum, uint64_t{0x5a} * (kBytes / 4096));
    ASSERT_GT(cached_fraction(file->data(), kBytes), 0.9) << "every page was just read";
    set_evict_released_pages(evict);
    ASSERT_EQ(release_file_pages(file->data(), kBytes), kBytes);
    set_evict_released_pages(false);
    const double cached = cached_fraction(file->data(), kBytes);
    if (evict)
      EXPECT_LT(cached, 0.1) << "evicted pages left the page cache";
    else
      EXPECT_GT(cached, 0.9) << "released pages stay in the page cache";
  }
}

TEST(MappedFile, ReadAheadBringsAFileIntoThePageCache) {
  const std::string path = test::temp_dir("mmap-read-ahead") + "/w.bin";
  constexpr size_t kBytes = (size_t{96} << 20) + 12345;  // 48 chunks of read_ahead's 2 MiB and a partial one
  {
    std::vector<uint8_t> data(kBytes, 0x3c);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), kBytes);
  }
  auto drop = [&] {  // out of the page cache (written back first: dirty pages are never dropped)
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::fsync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  };
  auto file = MappedFile::open(path);  // never read through: mincore sees the page cache only
  drop();
  ASSERT_LT(cached_fraction(file->data(), kBytes), 0.1) << "the page cache let the file go";
  std::stop_source stopped;
  stopped.request_stop();
  read_ahead(path, stopped.get_token());
  EXPECT_LT(cached_fraction(file->data(), kBytes), 0.1) << "a stopped read-ahead reads nothing";
  read_ahead(path);
  EXPECT_GT(cached_fraction(file->data(), kBytes), 0.99) << "read_ahead brought every piece into the page cache";
  read_ahead(path + ".missing");  // nothing to read: no error, no crash
}

}  // namespace
}  // namespace flux

namespace flux {
namespace {

TEST(System, ReportsMemory) {
  const uint64_t available = available_memory_bytes();
  const uint64_t rss = resident_memory_bytes();
  EXPECT_GT(available, 16u << 20);  // any machine that runs the tests has more than 16 MiB free
  EXPECT_GT(rss, 0u);
  std::vector<char> block(64 << 20, 1);  // touched: RSS grows by about 64 MiB
  EXPECT_GT(resident_memory_bytes(), rss + (32u << 20));
  EXPECT_EQ(block[12345], 1);
}

}  // namespace
}  // namespace flux
