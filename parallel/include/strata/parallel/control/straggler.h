#pragma once
// The straggler report: which rank is persistently slower than the others, on which node,
// and in which operation its extra time goes.
//
// Every rank's watchdog publishes its step profile (strata/core/step_profile.h) with each
// heartbeat; rank 0's watchdog feeds them to a StragglerDetector. A rank is a straggler
// when its median busy time per step (wall minus the time blocked waiting for others) over
// the last steps exceeds the median of the other ranks of its role (the same pipeline
// stages: stages differ in cost by design) by more than `threshold` (and by
// at least `min_excess`), at `confirmations` heartbeats in a row. It is reported once,
// and again only after it has recovered. Where the extra time goes: the kind of flight-
// recorder entry (forward, "F stage 1", optimizer step, ...) by which the rank's time per
// step exceeds the others' median most, or "outside recorded operations" (the model's
// own code, data loading) when that is larger. See docs/reliability.md, "Stragglers".

#include <torch/arg.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::parallel {

struct StragglerOptions {
  // Busy time above (1 + threshold) x the others' median; 0 turns the report off.
  TORCH_ARG(double, threshold) = 0.5;
  // Seconds per step a straggler must lose at least (below this, noise).
  TORCH_ARG(double, min_excess) = 0.002;
  // Steps a rank's profile must hold before it counts.
  TORCH_ARG(int64_t, min_steps) = 5;
  // Checks in a row that must find the same rank.
  TORCH_ARG(int, confirmations) = 3;
};

struct StragglerReport {
  int rank = -1;
  std::string host;
  int node = -1;              // the strata-run node; -1 when unknown (mpirun)
  double busy_s = 0;          // the straggler's median busy seconds per step
  double others_busy_s = 0;   // the median over the other ranks
  std::string where;          // the kind of operation with the largest excess
  double where_excess_s = 0;  // its excess, seconds per step
  int64_t steps = 0;          // steps in the straggler's window

  double ratio() const { return others_busy_s > 0 ? busy_s / others_busy_s : 0; }
  // "rank 1 (node 0, host h) is a straggler: 0.052 s of work per step against 0.021 s on
  // the other ranks (2.5x, last 20 steps); its extra 0.030 s per step is in forward".
  std::string line() const;
  // {"event": "straggler", "rank", "node", "host", "busy_s", "others_busy_s", "ratio",
  //  "where", "where_excess_s", "steps"}: the metrics record.
  nlohmann::json to_json() const;
};

// The slowest rank, if it is a straggler by `options` in these profiles (one per rank,
// rank order; StepProfile::summary() form; a profile of a finished rank may be null).
std::optional<StragglerReport> find_straggler(const std::vector<nlohmann::json>& profiles,
                                              const StragglerOptions& options);

// find_straggler over successive checks, with the confirmations and the once-per-episode
// rule: observe() returns a report the first time a rank is confirmed.
class StragglerDetector {
 public:
  explicit StragglerDetector(StragglerOptions options = {}) : options_(std::move(options)) {}
  std::optional<StragglerReport> observe(const std::vector<nlohmann::json>& profiles);

 private:
  StragglerOptions options_;
  int candidate_ = -1;  // the rank found at the last checks
  int streak_ = 0;      // how many checks in a row
  int reported_ = -1;   // the rank reported and not recovered since
};

}  // namespace strata::parallel
