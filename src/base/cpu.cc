#include "base/cpu.h"

#include <cpuid.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "base/error.h"

namespace flux {
namespace {

uint64_t xgetbv0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool fma = ecx & (1u << 12);
  const bool f16c = ecx & (1u << 29);
  const bool avx = ecx & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_ok = (xcr0 & 0x6) == 0x6;
  const bool zmm_ok = (xcr0 & 0xe6) == 0xe6;
  const bool amx_ok = (xcr0 & (3ull << 17)) == (3ull << 17);
  if (!ymm_ok) return f;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = (ebx & (1u << 5)) && fma && f16c;
  if (zmm_ok) {
    f.avx512f = ebx & (1u << 16);
    f.avx512dq = ebx & (1u << 17);
    f.avx512bw = ebx & (1u << 30);
    f.avx512vl = ebx & (1u << 31);
    f.avx512_vnni = ecx & (1u << 11);
  }
  if (amx_ok) {
    f.amx_bf16 = edx & (1u << 22);
    f.amx_tile = edx & (1u << 24);
    f.amx_int8 = edx & (1u << 25);
  }
  unsigned eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  if (zmm_ok) f.avx512_bf16 = eax1 & (1u << 5);
  return f;
}

CpuFeatures capped(const CpuFeatures& f, IsaLevel level) {
  CpuFeatures out = f;
  if (level < IsaLevel::avx512) {
    out.avx512f = out.avx512bw = out.avx512vl = out.avx512dq = false;
    out.avx512_bf16 = out.avx512_vnni = false;
    out.amx_tile = out.amx_bf16 = out.amx_int8 = false;
  }
  if (level < IsaLevel::avx2) out.avx2 = false;
  return out;
}

IsaLevel best_level(const CpuFeatures& f) {
  if (f.avx512()) return IsaLevel::avx512;
  if (f.avx2) return IsaLevel::avx2;
  return IsaLevel::scalar;
}

IsaLevel env_cap() {
  const char* env = std::getenv("FLUX_CPU");
  if (env == nullptr || *env == '\0') return IsaLevel::avx512;
  if (std::strcmp(env, "scalar") == 0) return IsaLevel::scalar;
  if (std::strcmp(env, "avx2") == 0) return IsaLevel::avx2;
  if (std::strcmp(env, "avx512") == 0) return IsaLevel::avx512;
  fail("FLUX_CPU: expected scalar, avx2 or avx512, got '", env, "'");
}

struct State {
  CpuFeatures detected = detect();
  CpuFeatures effective = capped(detected, env_cap());
};

State& state() {
  static State s;
  return s;
}

}  // namespace

std::string CpuFeatures::describe() const {
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(avx2, "avx2");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512dq, "avx512dq");
  add(avx512_bf16, "avx512_bf16");
  add(avx512_vnni, "avx512_vnni");
  add(amx_tile, "amx_tile");
  add(amx_bf16, "amx_bf16");
  add(amx_int8, "amx_int8");
  return s.empty() ? "scalar" : s;
}

const CpuFeatures& cpu_detected() { return state().detected; }
const CpuFeatures& cpu_features() { return state().effective; }

IsaLevel set_cpu_cap(IsaLevel level) {
  IsaLevel previous = isa_level();
  state().effective = capped(state().detected, level);
  return previous;
}

IsaLevel isa_level() { return best_level(cpu_features()); }

const char* isa_name(IsaLevel level) {
  switch (level) {
    case IsaLevel::scalar:
      return "scalar";
    case IsaLevel::avx2:
      return "avx2";
    case IsaLevel::avx512:
      return "avx512";
  }
  return "?";
}

}  // namespace flux
