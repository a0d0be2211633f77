#include "test_util.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

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

}  // namespace flux::test
