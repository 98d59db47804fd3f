#pragma once
// What the CPU's vector units can run, detected once, and the one switch that limits it
// for every module's kernels (sparse, moe, quant): STRATA_CPU_CAPABILITY, as ATen's
// ATEN_CPU_CAPABILITY.
//
//   STRATA_CPU_CAPABILITY    kernels may use
//   unset, "" or default     all the CPU has
//   portable                 nothing: the portable C++ kernels everywhere
//   avx512                   AVX-512 F/BW/VL/DQ
//   avx512_vnni              and VNNI
//   avx512_bf16              and BF16
//   amx                      and AMX (all of the above)
//
// A level only takes away: avx512 on a CPU without AVX-512 still runs the portable
// kernels. Any other value is a strata::Error naming the variable and these values.
//
// A kernel file compiled for AVX-512 (strata_avx512_sources in cmake/StrataAvx512.cmake)
// may only run once cpu_capability() said yes.

#include <string>

namespace strata::core {

struct CpuCapability {
  // AVX-512 F, BW, VL and DQ: what every AVX-512 kernel of strata needs. The features
  // below count only with it (no kernel uses them without it).
  bool avx512 = false;
  bool avx512_vnni = false;  // vpdpbusd: the int8 sparse kernel
  bool avx512_bf16 = false;
  bool amx = false;  // AMX-TILE, AMX-INT8 and AMX-BF16, with the tile state enabled by the OS

  bool operator==(const CpuCapability& o) const {
    return avx512 == o.avx512 && avx512_vnni == o.avx512_vnni && avx512_bf16 == o.avx512_bf16 &&
           amx == o.amx;
  }
};

inline constexpr const char* kCpuCapabilityEnv = "STRATA_CPU_CAPABILITY";

// What this CPU has (CPUID, read once per process).
CpuCapability cpu_detected();

// `detected` limited to `level`, a value of STRATA_CPU_CAPABILITY (see the table above).
CpuCapability limit_cpu_capability(const CpuCapability& detected, const std::string& level);

// What kernels may use: cpu_detected() limited by STRATA_CPU_CAPABILITY. The variable is
// read at every call (a getenv, far below any kernel's cost), so a test can set it.
CpuCapability cpu_capability();

// The highest level `c` reaches, e.g. "avx512_vnni"; "portable" when it has none.
std::string to_string(const CpuCapability& c);

}  // namespace strata::core
