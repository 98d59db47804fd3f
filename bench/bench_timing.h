#pragma once
// Timing helpers the benchmarks share: paired runs of a kernel and its baseline on a
// shared machine, and medians.

#include <algorithm>
#include <vector>

#include "strata/core/timer.h"

namespace strata::bench {

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

}  // namespace strata::bench
