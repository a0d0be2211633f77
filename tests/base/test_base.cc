#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <numeric>
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
