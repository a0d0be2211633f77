// CPU feature detection, read once from CPUID (and XGETBV for the OS-enabled register state).
// FLUX_CPU=scalar|avx2|avx512 caps what the dispatch may use, so tests can run every variant on one machine.
#pragma once

#include <string>

namespace flux {

struct CpuFeatures {
  bool avx2 = false;  // with FMA and F16C
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512_bf16 = false;
  bool avx512_vnni = false;
  bool amx_tile = false;
  bool amx_bf16 = false;
  bool amx_int8 = false;

  // The AVX-512 kernels need F, BW, VL, DQ together.
  bool avx512() const { return avx512f && avx512bw && avx512vl && avx512dq; }
  std::string describe() const;  // "avx2 avx512f ... " for logs and `fluxcpp info`
};

// What the hardware and OS support, as detected.
const CpuFeatures& cpu_detected();
// What the dispatch may use: cpu_detected() capped by FLUX_CPU or set_cpu_cap().
const CpuFeatures& cpu_features();

enum class IsaLevel { scalar, avx2, avx512 };
// Caps dispatch at `level` (tests use this to run every variant); returns the previous effective level.
IsaLevel set_cpu_cap(IsaLevel level);
IsaLevel isa_level();  // the best level cpu_features() allows
const char* isa_name(IsaLevel level);

}  // namespace flux
