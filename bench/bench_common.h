#pragma once
// What the benchmarks share: paired runs of a kernel and its baseline on a shared
// machine, medians, the environment they re-execute with, "KxN" shape arguments and the
// JSON line every figure is printed as (docs/BENCHMARKS.md).

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "strata/core/error.h"
#include "strata/core/timer.h"

namespace strata::bench {

// Re-executes the benchmark once, first thing in main, with the environment its baseline
// needs to be fair, unless the caller set these variables:
// - OpenBLAS's worker threads keep spinning for about 2^28 cycles after each call, and
//   libgomp's (LibTorch's intra-op pool, our kernels) for a while after each parallel
//   region. A benchmark that alternates the two (an OpenBLAS baseline, then an OpenMP
//   kernel) on few cores has both pools spinning against each other: on 2 cores and 2
//   threads an int8 SpMM took 23 ms instead of 1.2 ms. Hence OPENBLAS_THREAD_TIMEOUT=4 and
//   OMP_WAIT_POLICY=PASSIVE: idle threads sleep.
// - OpenBLAS 0.3.21 runs its slow Prescott kernels on CPUs it does not know (Sapphire
//   Rapids and later); OPENBLAS_CORETYPE names the right ones (scripts/blas_env.sh).
// Both libraries read these when they load, hence the exec.
inline void exec_with_sleeping_thread_pools(char** argv) {
  if (std::getenv("STRATA_BENCH_ENV")) return;
  setenv("STRATA_BENCH_ENV", "1", 1);
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
#if defined(__x86_64__)
  if (core_name && std::string(core_name()) == "Prescott") {
    if (__builtin_cpu_supports("avx512f"))
      setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    else if (__builtin_cpu_supports("avx2"))
      setenv("OPENBLAS_CORETYPE", "Haswell", 0);
  }
#else
  (void)core_name;
#endif
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds per call of f over one run of `calls` calls.
template <typename F>
double run_once(int calls, F&& f) {
  strata::core::Stopwatch clock;
  for (int i = 0; i < calls; ++i) f();
  return clock.seconds() / calls;
}

// Calls per run so that a run lasts at least min_ms (after one warm-up call).
template <typename F>
int calls_for(double min_ms, F&& f) {
  strata::core::Stopwatch warm;
  f();
  return std::max(1, int(min_ms * 1e-3 / std::max(warm.seconds(), 1e-7)));
}

struct Timing {
  double seconds;        // median seconds per call of the kernel
  double dense_seconds;  // median seconds per call of the baseline
  double ratio;          // median over runs of baseline / kernel time of the same run
};

// The machine is shared: each of `runs` runs times the baseline and the kernel back to
// back, each for at least min_ms, so that both see the same load, and the ratio is the
// median of the per-run ratios.
template <typename D, typename F>
Timing time_paired(int runs, double min_ms, D&& baseline, F&& f) {
  const int baseline_calls = calls_for(min_ms, baseline), calls = calls_for(min_ms, f);
  std::vector<double> tb, tk, ratio;
  for (int r = 0; r < runs; ++r) {
    tb.push_back(run_once(baseline_calls, baseline));
    tk.push_back(run_once(calls, f));
    ratio.push_back(tb.back() / tk.back());
  }
  return {median(tk), median(tb), median(ratio)};
}

// A --shapes entry "KxN" (e.g. 768x3072): input and output features, both positive.
inline std::pair<int64_t, int64_t> parse_shape(const std::string& text) {
  int64_t k = 0, n = 0;
  char sep = 0;
  std::istringstream in(text);
  STRATA_CHECK((in >> k >> sep >> n) && sep == 'x' && k > 0 && n > 0, "--shapes ", text,
               ": expected KxN, e.g. 768x3072");
  return {k, n};
}

// One figure as a JSON line's fields; callers add their own (threads, kernel, ...) and
// print line.dump().
inline nlohmann::json json_line(const std::string& bench, const std::string& name, double value,
                                const std::string& unit, double baseline, double ratio, int runs) {
  return {{"bench", bench},       {"case", name},   {"value", value}, {"unit", unit},
          {"baseline", baseline}, {"ratio", ratio}, {"runs", runs}};
}

}  // namespace strata::bench
