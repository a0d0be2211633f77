// Helpers shared by the CLI tests: running the fluxcpp binary (FLUX_CLI_PATH, set by tests/CMakeLists.txt)
// and reading its error line.
#pragma once

#include <string>
#include <vector>

#include "test_util.h"

namespace flux::test {

// Runs `fluxcpp args...` and waits (exit status, stdout, stderr).
inline RunResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), FLUX_CLI_PATH);
  return run_process(args);
}

// The last line of s (stderr's error line, after the log lines), without trailing newlines.
inline std::string last_line(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

}  // namespace flux::test
