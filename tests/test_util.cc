#include "test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace flux::test {

std::string shared_dir() {
  if (const char* env = std::getenv("FLUX_SHARED_DIR")) return env;
  return FLUX_SHARED_DIR;
}
std::string golden_dir() { return shared_dir() + "/golden"; }
std::string tokenizer_dir() { return shared_dir() + "/tokenizers"; }

std::string temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  static int counter = 0;
  fs::path p = fs::temp_directory_path() /
               ("fluxcpp-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

RunResult run_process(const std::vector<std::string>& args) {
  RunResult r;
  if (args.empty()) return r;
  const std::string dir = temp_dir("run");
  const std::string out = dir + "/out", err = dir + "/err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    ADD_FAILURE() << "cannot run " << args[0];
    return r;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  std::filesystem::remove_all(dir);
  return r;
}

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

Diff compare(const float* got, const float* want, size_t n) {
  Diff d;
  double max_want = 0, sum_diff = 0, sum_want = 0;
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], w = want[i];
    const double e = std::fabs(g - w);
    if (!(e <= d.max_abs)) d.max_abs = std::isnan(e) ? INFINITY : e;
    max_want = std::max(max_want, std::fabs(w));
    sum_diff += e * e;
    sum_want += w * w;
  }
  d.max_rel = max_want > 0 ? d.max_abs / max_want : d.max_abs;
  d.rms_rel = sum_want > 0 ? std::sqrt(sum_diff / sum_want) : std::sqrt(sum_diff);
  return d;
}

Diff compare(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.numel(), want.numel()) << got.describe() << " vs " << want.describe();
  if (got.numel() != want.numel()) return Diff{INFINITY, INFINITY, INFINITY};
  Tensor g = got.to(DType::f32), w = want.to(DType::f32);
  return compare(g.data<float>(), w.data<float>(), static_cast<size_t>(g.numel()));
}

U8Diff compare_u8(const uint8_t* got, const uint8_t* want, int64_t n) {
  U8Diff d;
  d.n_total = n;
  for (int64_t i = 0; i < n; ++i) {
    const int e = std::abs(int(got[i]) - int(want[i]));
    d.n_diff += e != 0;
    d.max_diff = std::max(d.max_diff, e);
  }
  return d;
}

void expect_u8(const std::string& what, const Image& img, const Tensor& want) {
  ASSERT_EQ(img.pixels.size(), static_cast<size_t>(want.numel())) << what;
  const U8Diff d = compare_u8(img.pixels.data(), want.data<uint8_t>(), want.numel());
  std::printf("[ u8       ] %s: %lld/%lld values differ (max %d)\n", what.c_str(), static_cast<long long>(d.n_diff),
              static_cast<long long>(d.n_total), d.max_diff);
  EXPECT_LE(d.max_diff, 1) << what;
  EXPECT_LE(d.n_diff, d.n_total / 100) << what;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace flux::test
