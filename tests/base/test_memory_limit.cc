// cgroup memory limits read from made-up cgroup trees (v1, v2, hybrid, namespaced, unlimited).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "base/memory_limit.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

class FakeCgroupFs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("fluxcpp-cgroup-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void write(const std::string& rel, const std::string& text) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string root() const { return root_.string(); }

 private:
  fs::path root_;
};

constexpr uint64_t GiB = uint64_t{1} << 30;
constexpr uint64_t MiB = uint64_t{1} << 20;

TEST_F(FakeCgroupFs, V1LeafLimitCountsPageCacheAsReclaimable) {
  write("memory/memory.limit_in_bytes", "9223372036854771712\n");
  write("memory/memory.usage_in_bytes", "100\n");
  write("memory/fluxtest/memory.limit_in_bytes", std::to_string(8 * GiB) + "\n");
  write("memory/fluxtest/memory.usage_in_bytes", std::to_string(3 * GiB) + "\n");
  write("memory/fluxtest/memory.stat",
        "cache 5\nrss 6\ntotal_cache 99\ntotal_active_file " + std::to_string(GiB) + "\ntotal_inactive_file " +
            std::to_string(GiB) + "\nactive_file 1\n");
  const CgroupMemory m = cgroup_memory("9:name=systemd:/\n4:memory:/fluxtest\n3:cpuset:/\n0::/\n", root());
  EXPECT_EQ(m.limit, 8 * GiB);
  EXPECT_EQ(m.usage, 3 * GiB);
  EXPECT_EQ(m.reclaimable, 2 * GiB);
  EXPECT_EQ(m.available(), 7 * GiB);  // 8 - (3 - 2)
  EXPECT_NE(m.dir.find("fluxtest"), std::string::npos);
}

TEST_F(FakeCgroupFs, V1ParentLimitAppliesToChild) {
  write("memory/a/memory.limit_in_bytes", std::to_string(4 * GiB));
  write("memory/a/memory.usage_in_bytes", std::to_string(GiB));
  write("memory/a/b/memory.limit_in_bytes", "9223372036854771712");
  write("memory/a/b/memory.usage_in_bytes", std::to_string(GiB));
  const CgroupMemory m = cgroup_memory("4:cpuacct,memory:/a/b\n", root());
  EXPECT_EQ(m.limit, 4 * GiB);
  EXPECT_EQ(m.available(), 3 * GiB);
}

TEST_F(FakeCgroupFs, V2TightestLevelWins) {
  write("cgroup.controllers", "cpu memory\n");
  write("user.slice/memory.max", std::to_string(16 * GiB) + "\n");
  write("user.slice/memory.current", std::to_string(2 * GiB) + "\n");
  write("user.slice/run.scope/memory.max", std::to_string(8 * GiB) + "\n");
  write("user.slice/run.scope/memory.current", std::to_string(GiB + 512 * MiB) + "\n");
  write("user.slice/run.scope/memory.stat", "anon 1\nfile 999\nactive_file " + std::to_string(512 * MiB) +
                                                "\ninactive_file 0\n");
  const CgroupMemory m = cgroup_memory("0::/user.slice/run.scope\n", root());
  EXPECT_EQ(m.limit, 8 * GiB);
  EXPECT_EQ(m.available(), 7 * GiB);
  // A parent tighter than its child decides.
  write("user.slice/memory.max", std::to_string(3 * GiB) + "\n");
  const CgroupMemory p = cgroup_memory("0::/user.slice/run.scope\n", root());
  EXPECT_EQ(p.limit, 3 * GiB);
  EXPECT_EQ(p.available(), 1 * GiB);
}

TEST_F(FakeCgroupFs, V2MaxMeansNoLimit) {
  write("cgroup.controllers", "memory\n");
  write("x/memory.max", "max\n");
  write("x/memory.current", "12345\n");
  EXPECT_EQ(cgroup_memory("0::/x\n", root()).limit, 0u);
}

TEST_F(FakeCgroupFs, HybridV2UnderUnified) {
  write("unified/cgroup.controllers", "\n");
  write("unified/svc/memory.max", std::to_string(2 * GiB));
  write("unified/svc/memory.current", "0");
  EXPECT_EQ(cgroup_memory("1:name=systemd:/svc\n0::/svc\n", root()).limit, 2 * GiB);
}

TEST_F(FakeCgroupFs, NamespacedPathFallsBackToMountRoot) {
  // In a cgroup namespace /proc/self/cgroup may name a path the mount does not have.
  write("cgroup.controllers", "memory\n");
  write("memory.max", std::to_string(6 * GiB));
  write("memory.current", std::to_string(GiB));
  EXPECT_EQ(cgroup_memory("0::/../../outside\n", root()).limit, 6 * GiB);
}

TEST_F(FakeCgroupFs, NothingReadable) {
  EXPECT_EQ(cgroup_memory("", root()).limit, 0u);
  EXPECT_EQ(cgroup_memory("garbage\n::\n", root()).limit, 0u);
  EXPECT_EQ(cgroup_memory("4:memory:/none\n", root() + "/missing").limit, 0u);
  CgroupMemory over;
  over.limit = GiB;
  over.usage = 2 * GiB;
  EXPECT_EQ(over.available(), 0u);
}

TEST(MemoryAvailable, ThisProcess) {
  const MemoryAvailable m = memory_available();
  EXPECT_GT(m.bytes, 0u);
  EXPECT_FALSE(m.source.empty());
}

}  // namespace
}  // namespace flux
