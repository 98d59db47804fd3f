#include "strata/core/cpu_capability.h"

#include <cstdlib>

#include "strata/core/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace strata::core {

namespace {

#if defined(__x86_64__)
// AMX: CPUID leaf 7 EDX bits 22 (BF16), 24 (TILE), 25 (INT8), and the tile state (XCR0
// bits 17 and 18) enabled by the OS. Read by hand: clang 14 has no "amx-*" for
// __builtin_cpu_supports.
bool cpu_has_amx() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned amx_bits = (1u << 22) | (1u << 24) | (1u << 25);
  if ((edx & amx_bits) != amx_bits) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const unsigned tile_state = (1u << 17) | (1u << 18);
  return (xcr0_lo & tile_state) == tile_state;
}

CpuCapability detect() {
  CpuCapability c;
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 registers.
  c.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (!c.avx512) return c;
  c.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  c.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  c.amx = cpu_has_amx();
  return c;
}
#else
CpuCapability detect() { return {}; }  // no x86 vector kernels elsewhere
#endif

}  // namespace

CpuCapability cpu_detected() {
  static const CpuCapability detected = detect();
  return detected;
}

CpuCapability limit_cpu_capability(const CpuCapability& detected, const std::string& level) {
  // Each level allows the features of the ones before it.
  static const char* const kLevels[] = {"portable", "avx512", "avx512_vnni", "avx512_bf16", "amx"};
  if (level.empty() || level == "default") return detected;
  int rank = -1;
  for (int i = 0; i < 5; ++i)
    if (level == kLevels[i]) rank = i;
  STRATA_CHECK(rank >= 0, kCpuCapabilityEnv, ": got '", level,
               "', expected default, portable, avx512, avx512_vnni, avx512_bf16 or amx");
  CpuCapability c = detected;
  c.avx512 = c.avx512 && rank >= 1;
  c.avx512_vnni = c.avx512_vnni && rank >= 2;
  c.avx512_bf16 = c.avx512_bf16 && rank >= 3;
  c.amx = c.amx && rank >= 4;
  return c;
}

CpuCapability cpu_capability() {
  const char* level = std::getenv(kCpuCapabilityEnv);
  return limit_cpu_capability(cpu_detected(), level ? level : "");
}

std::string to_string(const CpuCapability& c) {
  if (!c.avx512) return "portable";
  if (c.amx && c.avx512_bf16 && c.avx512_vnni) return "amx";
  if (c.avx512_bf16 && c.avx512_vnni) return "avx512_bf16";
  if (c.avx512_vnni) return "avx512_vnni";
  return "avx512";
}

}  // namespace strata::core
