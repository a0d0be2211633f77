// What every bench program times and feeds its kernels with.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace flux::bench {

// The best wall time of `reps` runs of fn, after one warm-up run (first touch of buffers, oneDNN primitive
// creation, cached primitives).
inline double best_seconds(int reps, const std::function<void()>& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// n values uniform in [-amp, amp), reproducible from seed.
inline std::vector<float> random_vector(size_t n, uint32_t seed, float amp = 1.0f) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-amp, amp);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace flux::bench
