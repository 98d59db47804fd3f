#pragma once
// Progress lines for long training loops: step, epoch, loss, throughput and ETA.

#include <cstdint>

#include "strata/core/timer.h"

namespace strata::core {

class ProgressReporter {
 public:
  // Prints every `log_every` steps and at the last step; does nothing when !enabled
  // (pass `rank == 0` so that only one rank speaks).
  ProgressReporter(int64_t total_steps, int64_t log_every, bool enabled);

  // Call once per step with the 1-based number of the step just finished and the
  // samples all ranks processed since the previous call. Prints, through spdlog::info,
  //   step  120/1880  epoch 1  loss 0.4321  7,912 samples/s  ETA 0:41
  // (without "epoch 1" when epoch < 0, for loops that have no epochs) where samples/s covers the
  // window since the previous printed line and the ETA uses the average step time since the first
  // update.
  void update(int64_t step, int64_t epoch, double loss, int64_t samples_since_last);

 private:
  int64_t total_steps_;
  int64_t log_every_;
  bool enabled_;
  int64_t first_step_ = -1;  // step number before the first update seen (resumed runs)
  int64_t window_samples_ = 0;
  Stopwatch since_start_;
  Stopwatch since_print_;
};

}  // namespace strata::core
