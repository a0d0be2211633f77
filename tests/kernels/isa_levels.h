// Runs a test body once per instruction-set level this CPU supports (scalar, avx2, avx512), capping the
// dispatch with set_cpu_cap, so every fast variant is checked against its reference twin.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "base/cpu.h"

namespace flux::test {

inline std::vector<IsaLevel> supported_isa_levels() {
  std::vector<IsaLevel> levels{IsaLevel::scalar};
  if (cpu_detected().avx2) levels.push_back(IsaLevel::avx2);
  if (cpu_detected().avx512()) levels.push_back(IsaLevel::avx512);
  return levels;
}

inline void for_each_isa(const std::function<void(IsaLevel)>& body) {
  for (IsaLevel level : supported_isa_levels()) {
    const IsaLevel saved = set_cpu_cap(level);
    SCOPED_TRACE(isa_name(level));
    body(level);
    set_cpu_cap(saved);
  }
}

}  // namespace flux::test
