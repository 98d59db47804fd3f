#pragma once
// What every training program does around its model and data, once: join the job (data
// plane, same configuration on every rank, watchdog), logging and threads, resume from a
// checkpoint, the loss averaged over the replicas and logged every --log-every steps as a
// progress line and a JSON metrics record, step times after a warm-up, the checkpoint
// cadence, and the pipeline's idle report. examples/train_fmnist.cpp and train_lm.cpp use it:
//
//   strata::programs::TrainingRun run(configuration, c.run, c.reliability, c.pipeline,
//                                     c.threads);
//   HybridParallel model(make_model(), run.world(), loss, sample, c.pipeline.options);
//   torch::optim::SGD optimizer(model.parameters(), 0.05);
//   int64_t step = run.resume(model, optimizer);
//   run.start(model, optimizer, step, last_step, batch, /*max_warmup_steps=*/20);
//   for (; step < last_step; ++step) {
//     run.begin_step(step);
//     run.end_step(step, model.train_step(inputs, targets, optimizer));
//     if (run.checkpoint_due(step + 1)) run.save(step + 1);
//   }
//   run.save_final(last_step);
//   std::vector<double> idle = run.finish();
//   run.metrics().write_final({{"train_loss", run.last_loss()}});

#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/metrics.h"
#include "strata/core/progress.h"
#include "strata/core/timer.h"
#include "strata/parallel/control/control_plane.h"
#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/programs/pipeline_flags.h"
#include "strata/programs/reliability_flags.h"
#include "strata/programs/simulated_time.h"

namespace strata::programs {

// The flags every training program shares: checkpoints, resuming, metrics, progress.
struct TrainingRunFlags {
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;  // 0: only at the end
  // --checkpoint-every auto: the interval Young/Daly's rule gives for the measured
  // checkpoint, restart and step times and --mtbf-hours (checkpoint_interval.h).
  bool checkpoint_every_auto = false;
  double mtbf_hours = 0;  // one node's mean time between failures; 0: not given
  std::string resume;
  std::string metrics_out;
  int64_t log_every = 50;
  // A fresh run (nothing to resume) may write into a --checkpoint-dir that already holds
  // checkpoints, replacing those of the same steps.
  bool overwrite = false;
  // --checkpoint-async: checkpoints are copied to memory at the step boundary and written
  // by a background thread while training goes on.
  bool checkpoint_async = false;

  // After parsing: --checkpoint-every or --resume auto without --checkpoint-dir is an error.
  void check() const;
  // The checkpoint to resume from: none without --resume; with --resume auto the newest
  // valid checkpoint in --checkpoint-dir, or none yet (a fresh start, so that a job can
  // be restarted with the same command line until it finishes); otherwise the checkpoint
  // --resume names (or the latest in that directory), and a strata::Error if there is none.
  std::optional<std::string> checkpoint_to_resume() const;
};
// --checkpoint-dir, --checkpoint-every (a number or "auto"), --mtbf-hours, --resume (a
// path or "auto"), --metrics-out, --log-every, --overwrite.
void add_training_run_flags(CLI::App& app, TrainingRunFlags& flags);

class TrainingRun {
 public:
  // Collective. Joins the job's world (MPI under mpirun, Gloo under strata-run), checks
  // that every rank parsed the same `configuration` (configuration_text), starts the
  // control plane (the watchdog ends a hang with a report), sets up logging (rank 0, or
  // every rank with log_all_ranks) and `threads` intra-op threads (for an in-process
  // pipeline, pipeline.worker_threads per worker), and checks `flags` and that every
  // output path (--checkpoint-dir, --metrics-out, --trace-out, --hang-report) can be
  // written (core::check_writable), before any work.
  // The flags must outlive the run.
  TrainingRun(const std::string& configuration, const TrainingRunFlags& flags,
              const ReliabilityFlags& reliability, const PipelineFlags& pipeline, int threads,
              bool log_all_ranks = false);
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  const parallel::CommunicatorPtr& world() const { return world_; }
  int rank() const { return world_->rank(); }
  // One replica's rows of a global batch (PipelineFlags::replica_batch on this world).
  int64_t replica_batch(int64_t global_batch) const;

  // The step to start from: 0, or the step of the checkpoint --resume names, loaded into
  // `model` and `optimizer`. Each key of `expected_extra` must equal the checkpoint's
  // extra at that key (a model the tensor shapes cannot tell apart is a strata::Error).
  int64_t resume(parallel::HybridParallel& model, torch::optim::Optimizer& optimizer,
                 const nlohmann::json& expected_extra = nlohmann::json::object());

  // Before the loop: steps first_step .. last_step of `samples_per_step` samples (the
  // global batch) will train `model` with `optimizer`; the first
  // min(max_warmup_steps, a tenth of them) are not timed. Opens the metrics file (rank 0).
  void start(parallel::HybridParallel& model, torch::optim::Optimizer& optimizer,
             int64_t first_step, int64_t last_step, int64_t samples_per_step,
             int64_t max_warmup_steps);
  // Right before the work of step `step` (0-based): the fault-injection point "train-step"
  // (the reliability tests kill a rank there), and the step's clock starts.
  void begin_step(int64_t step);
  // After step `step` (0-based) with this replica's mean loss: times the step and feeds
  // the pipeline report; every --log-every steps and at the last, averages the loss over
  // the replicas (collective) and writes the metrics record {"step": step + 1, "loss"}
  // joined with `fields`; then the progress line (with `epoch` unless it is -1).
  void end_step(int64_t step, double replica_loss,
                const nlohmann::json& fields = nlohmann::json::object(), int64_t epoch = -1);

  // Whether --checkpoint-every asks for a checkpoint after `step` steps. With auto, none
  // until the interval is chosen (end_step, a few steps after the warm-up), then one every
  // interval from there.
  bool checkpoint_due(int64_t step) const;
  // Collective. The checkpoint of `step` steps in --checkpoint-dir, with `extra`; nothing
  // without --checkpoint-dir.
  void save(int64_t step, const nlohmann::json& extra = nlohmann::json::object());
  // save() at the end of the run, unless the cadence has just written that checkpoint.
  void save_final(int64_t step, const nlohmann::json& extra = nlohmann::json::object());

  // Collective, after the loop: logs every rank's pipeline idle fraction and writes the
  // trace (PipelineReport::finish); returns the idle fractions (none without a pipeline).
  std::vector<double> finish();

  // With stages on simulated accelerators (an in-process pipeline): the measured steps'
  // simulated_samples_per_s, simulated_idle_fraction, simulated_utilization, energy_uj and
  // device fields (SimulatedTime) for the final record; nothing otherwise.
  void add_simulated_fields(nlohmann::json& record) const;

  core::MetricsWriter& metrics() { return *metrics_; }
  // The loss of the last logged window, averaged over the replicas; NaN before the first.
  double last_loss() const { return last_loss_; }
  // The timed steps (those after the warm-up); the seconds they took (begin_step to
  // end_step: training only); and the wall-clock seconds since the first of them began
  // (everything in the loop: logging, evaluation, checkpoints), 0 before it.
  int64_t measured_steps() const;
  double measured_seconds() const { return measured_seconds_; }
  double measured_wall_seconds() const;

 private:
  void check_outputs(const ReliabilityFlags& reliability) const;
  // Collective: --checkpoint-every auto's interval, from this run's measured step time, a
  // checkpoint written (and removed) to time it, and the start-up time (rank 0's figures
  // for every rank); logged and written to the metrics.
  void choose_checkpoint_interval(int64_t steps_done);
  // Rank 0: prints and records (metrics event "straggler") what the watchdog found.
  void report_stragglers(int64_t steps_done);

  const TrainingRunFlags& flags_;
  const PipelineFlags& pipeline_flags_;
  parallel::CommunicatorPtr world_;
  parallel::ControlPlane control_;
  parallel::HybridParallel* model_ = nullptr;
  torch::optim::Optimizer* optimizer_ = nullptr;
  int64_t first_step_ = 0, last_step_ = 0, samples_per_step_ = 0, warmup_end_ = 0;
  int64_t steps_ended_ = 0;  // the step after the last one end_step saw
  std::optional<core::MetricsWriter> metrics_;
  std::optional<core::ProgressReporter> progress_;
  std::optional<PipelineReport> report_;
  std::optional<SimulatedTime> simulated_;
  core::Stopwatch step_clock_;
  std::optional<core::Stopwatch> wall_clock_;  // from the first timed step
  double measured_seconds_ = 0;
  // From construction to the end of this process's first step: what a restart costs
  // after the relaunch (start-up, joining, loading the checkpoint, a first step).
  core::Stopwatch since_start_;
  double startup_seconds_ = -1;
  std::optional<int64_t> auto_interval_;  // --checkpoint-every auto, once chosen
  int64_t auto_anchor_ = 0;               // the step it was chosen at
  double loss_sum_ = 0;                   // this replica's loss, summed since the last log line
  int64_t loss_count_ = 0;
  double last_loss_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace strata::programs
