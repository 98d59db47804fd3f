#pragma once
// What every pipelined training program shares: the pipeline flags on its command line,
// bound to the HybridParallel options, the checks of the batch against the layout, and
// the end-of-run report (idle fraction per rank against theory, and the Chrome trace).
// train_fmnist and train_lm use them, so the flags mean the same in both.

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/parallel/pipeline/trace.h"
#include "strata/programs/stage_devices.h"

namespace strata::programs {

// The pipeline flags bind to `options` (--pp to pipeline_parallel, the others to the fields
// of options.pipeline()); only the trace, which no Options struct describes, has fields here.
struct PipelineFlags {
  parallel::HybridParallelOptions options;
  std::string trace_out;
  int trace_steps = 3;
  std::string devices_list;          // --devices as given
  std::vector<StageDevice> devices;  // parsed by check_pipeline_flags (empty: the CPU)
  // Intra-op threads of each worker of an in-process pipeline: 1, or --threads when given.
  int worker_threads = 1;

  // The rows of one replica's batch for a global batch on `world_size` ranks; a layout the
  // ranks or the batch do not allow is a strata::Error naming the flags. A world of one
  // process with --pp K runs the K stages in it (one replica).
  int64_t replica_batch(int64_t global_batch, int world_size) const;
  // Whether a world of `world_size` runs the pipeline's stages as threads of one process.
  bool in_process(int world_size) const;
  // "cpu" per stage, or the --devices entries.
  std::vector<std::string> device_names() const;
};

// --pp, --micro-batches, --schedule, --virtual-stages, --recompute, --balance, --devices,
// --trace-out, --trace-steps, --bucket-cap-mb.
void add_pipeline_flags(CLI::App& app, PipelineFlags& flags);
// After parsing: pipeline flags given without --pp 2 or more are an error; --devices is
// parsed into flags.devices and the options (a bad entry is a strata::Error naming it);
// --threads, when given, sets flags.worker_threads.
void check_pipeline_flags(const CLI::App& app, PipelineFlags& flags);

// The pipeline's fields of a run's final metrics record (nothing without a pipeline):
// schedule, micro_batches, devices, and idle_fraction (one per pipeline rank).
void add_pipeline_fields(nlohmann::json& record, const PipelineFlags& flags,
                         const std::vector<double>& idle);

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
  std::vector<double> busy_;  // per executor in this process
  double wall_ = 0;
  std::optional<parallel::PipelineTraceRecorder> trace_;
};

}  // namespace strata::programs
