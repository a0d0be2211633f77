// One error type for the whole project. Its message names what is wrong (file, tensor, field) and, where it
// applies, the expected versus the actual value. Loaders and parsers throw it; the CLI prints it on one line
// and the server turns it into a JSON error in one place.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace flux {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Concatenates any streamable values: str_cat("tensor ", name, ": expected ", a, ", got ", b).
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

// Thrown when a std::stop_token is triggered mid-computation (between denoising steps or transformer blocks).
struct Cancelled : Error {
  Cancelled() : Error("cancelled") {}
};

}  // namespace flux

// FLUX_CHECK(cond, "file ", path, ": expected ", a, ", got ", b) throws flux::Error when cond is false.
#define FLUX_CHECK(cond, ...)    \
  do {                           \
    if (!(cond)) {               \
      ::flux::fail(__VA_ARGS__); \
    }                            \
  } while (0)
