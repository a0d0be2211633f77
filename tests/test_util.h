// Helpers shared by the tests: paths to shared/ test data, random inputs, tensor comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "io/image.h"
#include "tensor/tensor.h"

namespace flux::test {

// ../shared (tests only; the product never reads it).
std::string shared_dir();
std::string golden_dir();     // shared/golden
std::string tokenizer_dir();  // shared/tokenizers
// A fresh empty temporary directory (removed at process exit is not guaranteed).
std::string temp_dir(const std::string& tag);

// Runs argv[0] with the given arguments, waits, and returns its exit status (128 + signal if killed) and
// what it wrote to stdout and stderr.
struct RunResult {
  int status = -1;
  std::string out, err;
};
RunResult run_process(const std::vector<std::string>& argv);
// The whole file ("" if it cannot be read).
std::string read_file(const std::string& path);

// Uniform values in [lo, hi) from a fixed seed.
std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// max|a-b| / max|b| (the manifest's rel_err) and ||a-b|| / ||b||.
struct Diff {
  double max_rel = 0;
  double rms_rel = 0;
  double max_abs = 0;
};
Diff compare(const float* got, const float* want, size_t n);
Diff compare(const Tensor& got, const Tensor& want);  // both converted to f32; shapes must match

// gtest assertion: rel error (max|a-b|/max|b|) within tol. Prints both errors on failure.
#define EXPECT_CLOSE(got, want, tol)                                                     \
  do {                                                                                   \
    const ::flux::test::Diff d_ = ::flux::test::compare(got, want);                      \
    EXPECT_LE(d_.max_rel, tol) << "rms_rel " << d_.rms_rel << " max_abs " << d_.max_abs; \
  } while (0)

// Pixels of a picture against a reference uint8 tensor: how many differ and by how much at most.
struct U8Diff {
  int64_t n_diff = 0, n_total = 0;
  int max_diff = 0;
};
U8Diff compare_u8(const uint8_t* got, const uint8_t* want, int64_t n);
// The manifest's uint8 rule: values differ by at most 1, on at most 1% of them (the counts are printed).
void expect_u8(const std::string& what, const Image& img, const Tensor& want);

// Sets an environment variable for a scope (restores the old value after).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// What f throws as flux::Error (its message), or "" when it throws nothing.
std::string error_of(const std::function<void()>& f);

}  // namespace flux::test
