#pragma once
// Languini's compute classes (issue 21): a run trains until its measured compute time
// reaches a budget, so that a faster model sees more data. Compute time is the wall time of
// the training steps on this machine (the caller times each step; evaluation, logging and
// checkpoints are not steps), and every rank stops at the same step: the ranks' cumulative
// times are all-reduced (max) after each step, so the slowest rank decides.
//
//   ComputeBudget budget(c.compute_budget, run.world());
//   for (; step < last_step; ++step) {
//     core::Stopwatch clock;
//     model.train_step(...);
//     if (budget.step_done(clock.seconds())) { ++step; break; }
//   }

#include <cstdint>
#include <string>

#include "strata/parallel/comm/communicator.h"

namespace strata::programs {

class ComputeBudget {
 public:
  // budget_seconds 0: no budget (step_done never stops the run and does not communicate).
  ComputeBudget(double budget_seconds, parallel::CommunicatorPtr world);

  bool enabled() const { return budget_ > 0; }
  double budget_seconds() const { return budget_; }

  // Collective when enabled: adds this rank's `step_seconds` and returns true once the
  // agreed compute time has reached the budget (a step boundary: the run stops there, at
  // most one step past it). Throws strata::Error when the first step alone exceeds the
  // budget (`what` names the step's size in the message): the budget cannot hold one step.
  bool step_done(double step_seconds, const std::string& what = "");

  int64_t steps() const { return steps_; }
  // The agreed compute time so far (the slowest rank's sum of step times), and the part of
  // it the last step added.
  double seconds() const { return seconds_; }
  double last_step_seconds() const { return last_step_seconds_; }

 private:
  double budget_;
  parallel::CommunicatorPtr world_;
  double local_seconds_ = 0;
  double seconds_ = 0;
  double last_step_seconds_ = 0;
  int64_t steps_ = 0;
};

}  // namespace strata::programs
