#pragma once
// What every pipelined training program shares: the pipeline flags on its command line,
// the HybridParallel options they make, the checks of the batch against the layout, and
// the end-of-run report (idle fraction per rank against theory, and the Chrome trace).
// train_fmnist and train_lm use them, so the flags mean the same in both.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/parallel/pipeline/trace.h"

namespace strata::programs {

struct PipelineFlags {
  int pp = 1;
  int micro_batches = 4;
  std::string schedule = "1f1b";
  int virtual_stages = 1;
  std::string recompute = "never";
  std::string balance = "params";
  std::string trace_out;
  int trace_steps = 3;
  double bucket_cap_mb = 25;

  parallel::HybridParallelOptions options() const;
  // The rows of one replica's batch for a global batch on `world_size` ranks; a layout the
  // ranks or the batch do not allow is a strata::Error naming the flags.
  int64_t replica_batch(int64_t global_batch, int world_size) const;
};

// --pp, --micro-batches, --schedule, --virtual-stages, --recompute, --balance, --trace-out,
// --trace-steps, --bucket-cap-mb.
void add_pipeline_flags(CLI::App& app, PipelineFlags& flags);
// After parsing: pipeline flags given without --pp 2 or more are an error.
void check_pipeline_flags(const CLI::App& app, const PipelineFlags& flags);

// Idle time and timeline of a pipelined run, over the steps from the first measured one.
// Does nothing for a model that is not pipelined.
class PipelineReport {
 public:
  PipelineReport(const PipelineFlags& flags, parallel::PipelineParallel* pipeline);

  // After each step, on every rank: `seconds` is the step's wall time on this rank.
  void record(int64_t step, int64_t first_measured_step, double seconds);
  // Collective. Logs every rank's idle fraction (world rank order) against the theory for
  // equal stages, writes the trace, and returns the idle fractions.
  std::vector<double> finish();

 private:
  const PipelineFlags& flags_;
  parallel::PipelineParallel* pipeline_;
  double busy_ = 0, wall_ = 0;
  std::optional<parallel::PipelineTraceRecorder> trace_;
};

}  // namespace strata::programs
