// `fluxcpp generate --memory-budget / --low-memory`: a bad budget value is named, a size that cannot fit the
// budget exits 1 with one line naming the stage, the need and the budget (and writes nothing), and --low-memory
// (every drop, weights per call) draws the same image as the default run.
#include <filesystem>

#include "cli_util.h"
#include "io/image.h"
#include "test_util.h"

namespace flux {
namespace {

using test::last_line;
using test::run_cli;

const std::string& model() {
  static const std::string dir = [] {
    const std::string d = test::temp_dir("cli-memory") + "/model";
    const test::RunResult r = run_cli({"make-test-model", d});
    EXPECT_EQ(r.status, 0) << r.err;
    return d;
  }();
  return dir;
}

TEST(CliMemory, BadBudgetValueIsNamed) {
  for (const char* bad : {"8X", "12GQ", "lots"}) {
    const test::RunResult r = run_cli({"generate", "--model", model(), "-p", "a cat", "--memory-budget", bad});
    EXPECT_EQ(r.status, 1) << r.err;
    const std::string line = last_line(r.err);
    EXPECT_NE(line.find("--memory-budget"), std::string::npos) << line;
    EXPECT_NE(line.find(std::string("'") + bad + "'"), std::string::npos) << line;
  }
}

TEST(CliMemory, SizeOverTheBudgetIsRefused) {
  const std::string out = test::temp_dir("cli-memory") + "/big.png";
  const test::RunResult r = run_cli({"generate", "--model", model(), "-p", "a cat", "-W", "1024", "-H", "1024",
                                     "--memory-budget", "300M", "-o", out, "--threads", "2"});
  EXPECT_EQ(r.status, 1) << r.err;
  const std::string line = last_line(r.err);
  EXPECT_NE(line.find("1024x1024"), std::string::npos) << line;
  EXPECT_NE(line.find("decode stage needs"), std::string::npos) << line;
  EXPECT_NE(line.find("the budget is 300 MiB (314572800 bytes)"), std::string::npos) << line;
  EXPECT_FALSE(std::filesystem::exists(out));
  // Refused from the estimates, before any weight was bound (not after loading the whole model).
  EXPECT_EQ(r.err.find("loaded FLUX"), std::string::npos) << r.err;
}

// Inside a memory cgroup the default budget is the cgroup's free room (not the machine's MemAvailable): a
// 1024x1024 image of the tiny model (decode ~1.4 GB) in a 600 MiB group is refused before loading, naming a
// budget below 600 MiB, and a 64x64 one runs. Needs root and a writable cgroup fs (scripts/in_memory_cgroup.sh).
TEST(CliMemory, DefaultBudgetFollowsTheMemoryCgroup) {
  const std::string script = FLUX_SOURCE_DIR "/scripts/in_memory_cgroup.sh";
  const test::RunResult probe = test::run_process({"/bin/bash", script, "600M", "true"});
  if (probe.status != 0) GTEST_SKIP() << "cannot make a memory cgroup here: " << probe.err;
  const std::string dir = test::temp_dir("cli-memory");
  test::RunResult r = test::run_process({"/bin/bash", script, "600M", FLUX_CLI_PATH, "generate", "--model", model(), "-p",
                                         "a cat", "-W", "1024", "-H", "1024", "-o", dir + "/cg-big.png"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("budget"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(cgroup /sys/fs/cgroup/"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("does not fit the memory budget"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("oom_kill 0"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/cg-big.png"));
  r = test::run_process({"/bin/bash", script, "600M", FLUX_CLI_PATH, "generate", "--model", model(), "-p", "a cat", "-W",
                         "64", "-H", "64", "--threads", "2", "-o", dir + "/cg-small.png"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("(cgroup /sys/fs/cgroup/"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/cg-small.png"));
}

TEST(CliMemory, LowMemoryDrawsTheSameImage) {
  const std::string dir = test::temp_dir("cli-memory");
  const std::vector<std::string> common = {"generate", "--model", model(), "-p",      "a cat", "-W",        "128", "-H",
                                           "128",      "--seed",  "3",     "--steps", "2",     "--threads", "2"};
  std::vector<std::string> a = common, b = common;
  a.insert(a.end(), {"-o", dir + "/a.png"});
  b.insert(b.end(), {"-o", dir + "/b.png", "--low-memory"});
  b.insert(b.begin(), {"--log", "info"});
  const test::RunResult ra = run_cli(a), rb = run_cli(b);
  ASSERT_EQ(ra.status, 0) << ra.err;
  ASSERT_EQ(rb.status, 0) << rb.err;
  // Decided once at load (for the first job's size); the job's plan is the same, so it is not logged again.
  EXPECT_NE(rb.err.find("memory: plan drop_transformer for the first job"), std::string::npos) << rb.err;
  EXPECT_EQ(rb.err.find("memory: plan drop_transformer for a job"), std::string::npos) << rb.err;
  EXPECT_NE(rb.err.find("memory: dropped t5"), std::string::npos) << rb.err;
  EXPECT_NE(rb.err.find("memory: re-bound transformer"), std::string::npos) << rb.err;
  EXPECT_EQ(read_image(dir + "/a.png").pixels, read_image(dir + "/b.png").pixels);
}

}  // namespace
}  // namespace flux
