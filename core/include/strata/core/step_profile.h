#pragma once
// How long this rank's recent training steps took, and where the time went: the numbers
// the straggler report compares across ranks (strata/parallel/control/straggler.h).
//
// In a synchronous job every rank's step takes as long as the slowest rank's, because
// the others wait for it in the gradient all-reduce or a pipeline receive. So a step is
// split: `blocked` is the time this process's threads sat in a communicator's wait()
// (FlightRecorder::blocked_seconds), and `busy` = wall - blocked is the rank's own work.
// A straggler is a rank whose busy time stands out; the recorder's totals by kind say in
// which operation (forward, "F stage 1", optimizer step, ...) its extra time goes.
//
//   auto& profile = strata::core::StepProfile::global();
//   profile.begin_step();  ... the step ...  profile.end_step();
//   profile.summary();     // what the watchdog publishes with each heartbeat
//
// Thread-safe: the training thread records, the watchdog's thread reads.

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "strata/core/flight_recorder.h"

namespace strata::core {

class StepProfile {
 public:
  // Keeps the last `window` steps.
  explicit StepProfile(size_t window = 20, FlightRecorder& recorder = FlightRecorder::global());
  // The process's profile, which strata's training loop (programs::TrainingRun) records.
  static StepProfile& global();

  void begin_step();
  // Ends the step begun last; without a begin_step it does nothing.
  void end_step();

  // Over the steps kept: {"steps": n, "wall_s": median, "busy_s": median, "blocked_s":
  // median, "by_kind": {kind: mean seconds per step}}, plus "host" (this machine's name)
  // and "node" (STRATA_NODE_RANK, the strata-run node; -1 when not set). {"steps": 0, ...}
  // before the first step ends.
  nlohmann::json summary() const;

 private:
  struct Step {
    double wall_s = 0, blocked_s = 0;
    std::map<std::string, double> by_kind;
  };
  size_t window_;
  FlightRecorder& recorder_;
  mutable std::mutex mutex_;
  bool in_step_ = false;
  std::chrono::steady_clock::time_point start_;
  double blocked_at_start_ = 0;
  std::map<std::string, double> totals_at_start_;
  std::deque<Step> steps_;
};

}  // namespace strata::core
