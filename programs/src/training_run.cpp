#include "strata/programs/training_run.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/fault_injection.h"
#include "strata/core/logging.h"
#include "strata/core/output_files.h"
#include "strata/core/step_profile.h"
#include "strata/core/threads.h"
#include "strata/parallel/control/configuration_check.h"
#include "strata/programs/checkpoint_interval.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/output_flags.h"

namespace strata::programs {
void TrainingRunFlags::check() const {
  STRATA_CHECK((checkpoint_every == 0 && !checkpoint_every_auto) || !checkpoint_dir.empty(),
               "--checkpoint-every needs --checkpoint-dir");
  STRATA_CHECK(!checkpoint_every_auto || mtbf_hours > 0,
               "--checkpoint-every auto needs --mtbf-hours (one node's mean time between "
               "failures, in hours)");
  STRATA_CHECK(resume != "auto" || !checkpoint_dir.empty(),
               "--resume auto needs --checkpoint-dir (where it looks for checkpoints)");
}

std::optional<std::string> TrainingRunFlags::checkpoint_to_resume() const {
  if (resume.empty()) return std::nullopt;
  if (resume == "auto") {
    std::vector<std::string> rejected;
    auto path = core::latest_valid_checkpoint(checkpoint_dir, &rejected);
    for (const std::string& why : rejected) spdlog::warn("--resume auto: skipped {}", why);
    if (!path)
      spdlog::info("--resume auto: no checkpoint in {} yet, starting fresh", checkpoint_dir);
    return path;
  }
  auto path = core::find_checkpoint(resume);
  STRATA_CHECK(path.has_value(), "--resume ", resume, ": no checkpoint there");
  return path;
}

void add_training_run_flags(CLI::App& app, TrainingRunFlags& f) {
  app.add_option("--checkpoint-dir", f.checkpoint_dir,
                 "Write checkpoints <dir>/step-<N> here (rank 0 writes)");
  CLI::Option* every = app.add_option_function<std::string>(
      "--checkpoint-every",
      [&f](const std::string& text) {
        f.checkpoint_every_auto = text == "auto";
        f.checkpoint_every = f.checkpoint_every_auto ? 0 : std::stoll(text);
      },
      "Checkpoint every N steps (0: only at the end), or auto: Young/Daly's interval from "
      "the measured checkpoint, restart and step times and --mtbf-hours");
  integer_range_or(every, 0, kMaxSteps, "auto")->default_str("0");
  positive_real(app.add_option("--mtbf-hours", f.mtbf_hours,
                               "One node's mean time between failures in hours, for "
                               "--checkpoint-every auto"),
                kMaxSeconds);
  app.add_option("--resume", f.resume,
                 "Resume from a checkpoint, from the latest one in a directory, or 'auto': "
                 "the newest valid one in --checkpoint-dir if there is one");
  app.add_option("--metrics-out", f.metrics_out, "Write JSON-lines metrics here (rank 0)");
  integer_range(app.add_option("--log-every", f.log_every, "Print progress every N steps"), 1,
                kMaxSteps);
  add_overwrite_flag(app, f.overwrite);
  app.add_flag("--checkpoint-async", f.checkpoint_async,
               "Copy each checkpoint to memory at the step boundary and write it on a "
               "background thread while training goes on (one write in flight)");
}

TrainingRun::TrainingRun(const std::string& configuration, const TrainingRunFlags& flags,
                         const ReliabilityFlags& reliability, const PipelineFlags& pipeline,
                         int threads, bool log_all_ranks)
    : flags_(flags),
      pipeline_flags_(pipeline),
      world_(parallel::world_communicator(reliability.backend)),
      control_(*world_, reliability.control_plane) {
  // Ranks started with different flags stop with that one error before anything else
  // runs; after the control plane, so that the job prints it once (run_main).
  parallel::check_same_configuration(*world_, configuration);
  core::init_logging(world_->rank(), log_all_ranks);
  // An in-process pipeline's workers each take this many intra-op threads.
  core::set_num_threads(pipeline.in_process(world_->size()) ? pipeline.worker_threads : threads);
  flags_.check();
  check_outputs(reliability);
}

void TrainingRun::check_outputs(const ReliabilityFlags& reliability) const {
  // A bad path fails now, not after the training it was to record. Rank 0 writes the
  // checkpoints, the metrics and the trace; any rank may write the hang report.
  if (rank() == 0) {
    core::check_writable("--checkpoint-dir", flags_.checkpoint_dir, core::OutputKind::Directory);
    core::check_writable("--metrics-out", flags_.metrics_out);
    if (pipeline_flags_.options.pipeline_parallel() > 1)
      core::check_writable("--trace-out", pipeline_flags_.trace_out);
  }
  core::check_writable("--hang-report", reliability.control_plane.hang_report(),
                       core::OutputKind::File, /*creates_parents=*/false);
}

int64_t TrainingRun::replica_batch(int64_t global_batch) const {
  return pipeline_flags_.replica_batch(global_batch, world_->size());
}

int64_t TrainingRun::resume(parallel::HybridParallel& model, torch::optim::Optimizer& optimizer,
                            const nlohmann::json& expected_extra) {
  const auto path = flags_.checkpoint_to_resume();
  if (!path) {
    // A fresh run would write its checkpoints over another run's at the same steps.
    const auto existing = flags_.checkpoint_dir.empty()
                              ? std::nullopt
                              : core::latest_checkpoint(flags_.checkpoint_dir);
    STRATA_CHECK(!existing || flags_.overwrite, "--checkpoint-dir ", flags_.checkpoint_dir,
                 ": holds ", existing.value_or(""),
                 " from an earlier run; pass --resume to continue it or --overwrite to replace it");
    return 0;
  }
  nlohmann::json extra;
  const int64_t step = model.load_checkpoint(*path, optimizer, &extra);
  for (const auto& [key, value] : expected_extra.items()) {
    const nlohmann::json saved = extra.value(key, nlohmann::json());
    STRATA_CHECK(saved == value, "--resume ", *path, ": saved with ", key, " ", saved.dump(),
                 ", this run has ", value.dump());
  }
  spdlog::info("resumed from {} at step {}", *path, step);
  return step;
}

void TrainingRun::start(parallel::HybridParallel& model, torch::optim::Optimizer& optimizer,
                        int64_t first_step, int64_t last_step, int64_t samples_per_step,
                        int64_t max_warmup_steps) {
  model_ = &model;
  optimizer_ = &optimizer;
  first_step_ = first_step;
  last_step_ = last_step;
  samples_per_step_ = samples_per_step;
  // First: a stage too large for its device fails before any output is opened.
  simulated_.emplace(model.pipeline(), pipeline_flags_.devices);
  metrics_.emplace(rank() == 0 ? flags_.metrics_out : "");
  // strata-run --max-restarts relaunched this job after a crash: say so where the run's
  // numbers are (the agent says it on stderr too).
  if (const char* restart = std::getenv("STRATA_RESTART_COUNT")) {
    const char* reason = std::getenv("STRATA_RESTART_REASON");
    nlohmann::json record = {{"event", "restart"},
                             {"restart", std::atoi(restart)},
                             {"reason", reason ? reason : ""},
                             {"resumed_at_step", first_step},
                             {"world_size", world_->size()}};
    // The restarts before this one (the agent's record; each attempt's metrics file
    // replaces the last one's).
    if (const char* history = std::getenv("STRATA_RESTART_HISTORY")) {
      auto earlier = nlohmann::json::parse(history, nullptr, /*allow_exceptions=*/false);
      if (earlier.is_array() && !earlier.empty()) record["earlier"] = std::move(earlier);
    }
    // --nnodes MIN:MAX: the job relaunched on a different number of nodes.
    if (const char* previous = std::getenv("STRATA_PREVIOUS_WORLD_SIZE")) {
      record["previous_world_size"] = std::atoi(previous);
      spdlog::info("the job restarted on {} rank(s), {} before; {} samples per step as before",
                   world_->size(), std::atoi(previous), samples_per_step);
    }
    metrics_->write(record);
  }
  progress_.emplace(last_step, flags_.log_every, rank() == 0);
  // Steps are timed after a warm-up, so that first-touch allocations don't count.
  warmup_end_ = first_step + std::min<int64_t>(max_warmup_steps, (last_step - first_step) / 10);
  report_.emplace(pipeline_flags_, model.pipeline());
}

void TrainingRun::begin_step(int64_t step) {
  core::StepProfile::global().begin_step();
  core::fault_point("train-step");
  if (step == warmup_end_) wall_clock_.emplace();
  step_clock_.reset();
}

void TrainingRun::end_step(int64_t step, double replica_loss, const nlohmann::json& fields,
                           int64_t epoch) {
  STRATA_CHECK(model_ != nullptr, "TrainingRun::end_step before start()");
  const double seconds = step_clock_.seconds();
  core::StepProfile::global().end_step();
  if (rank() == 0) report_stragglers(step + 1);
  steps_ended_ = step + 1;
  if (startup_seconds_ < 0) startup_seconds_ = since_start_.seconds();
  if (step >= warmup_end_) measured_seconds_ += seconds;
  report_->record(step, warmup_end_, seconds);
  simulated_->record(step, warmup_end_, samples_per_step_);
  loss_sum_ += replica_loss;
  ++loss_count_;
  if ((step + 1) % flags_.log_every == 0 || step + 1 == last_step_) {
    last_loss_ = model_->mean_over_replicas(loss_sum_ / static_cast<double>(loss_count_));
    loss_sum_ = 0;
    loss_count_ = 0;
    nlohmann::json record = {{"step", step + 1}, {"loss", last_loss_}};
    record.update(fields);
    metrics_->write(record);
  }
  progress_->update(step + 1, epoch, last_loss_, samples_per_step_);
  // A few timed steps are enough to know the step time.
  constexpr int64_t kTimedStepsForInterval = 5;
  if (flags_.checkpoint_every_auto && !auto_interval_ &&
      step + 1 - warmup_end_ >= kTimedStepsForInterval && step + 1 < last_step_) {
    choose_checkpoint_interval(step + 1);
  }
}

void TrainingRun::choose_checkpoint_interval(int64_t steps_done) {
  const double step_seconds =
      measured_seconds_ / static_cast<double>(steps_done - std::max(warmup_end_, first_step_));
  // The checkpoint's cost, measured: one written beside the real ones, then removed.
  const std::string probe = flags_.checkpoint_dir + "/.checkpoint-interval-probe";
  core::Stopwatch clock;
  model_->save_checkpoint(probe, *optimizer_, steps_done, nlohmann::json::object());
  const double checkpoint_seconds = clock.seconds();
  if (rank() == 0) std::filesystem::remove_all(probe);
  // Every rank must checkpoint at the same steps: rank 0's figures decide.
  at::Tensor measured =
      torch::tensor({step_seconds, checkpoint_seconds, startup_seconds_}, at::kDouble);
  world_->broadcast(measured, 0)->wait();
  CheckpointCosts costs;
  costs.step_seconds = measured[0].item<double>();
  costs.checkpoint_seconds = measured[1].item<double>();
  costs.restart_seconds = measured[2].item<double>();
  costs.mtbf_hours_per_node = flags_.mtbf_hours;
  costs.nodes = job_nodes(world_->size());
  const CheckpointInterval chosen = programs::choose_checkpoint_interval(costs);
  auto_interval_ = chosen.steps;
  auto_anchor_ = steps_done;
  spdlog::info(
      "--checkpoint-every auto: every {} steps ({:.0f} s of work; checkpoint {:.3f} s, "
      "restart {:.1f} s, step {:.4f} s, MTBF {:.4g} h per node over {} node(s) = {:.4g} h); "
      "a failure costs {:.0f} s of work on average",
      chosen.steps, chosen.seconds, costs.checkpoint_seconds, costs.restart_seconds,
      costs.step_seconds, flags_.mtbf_hours, costs.nodes, chosen.job_mtbf_seconds / 3600,
      chosen.expected_lost_seconds);
  metrics_->write({{"event", "checkpoint_interval"},
                   {"step", steps_done},
                   {"every_steps", chosen.steps},
                   {"interval_seconds", chosen.seconds},
                   {"checkpoint_seconds", costs.checkpoint_seconds},
                   {"restart_seconds", costs.restart_seconds},
                   {"step_seconds", costs.step_seconds},
                   {"nodes", costs.nodes},
                   {"job_mtbf_hours", chosen.job_mtbf_seconds / 3600},
                   {"expected_lost_seconds", chosen.expected_lost_seconds}});
}

void TrainingRun::report_stragglers(int64_t steps_done) {
  for (const auto& straggler : control_.take_straggler_reports()) {
    spdlog::warn("straggler at step {}: {}", steps_done, straggler.line());
    nlohmann::json record = straggler.to_json();
    record["step"] = steps_done;
    metrics_->write(record);
  }
}

bool TrainingRun::checkpoint_due(int64_t step) const {
  if (flags_.checkpoint_every_auto) {
    return auto_interval_ && step > auto_anchor_ && (step - auto_anchor_) % *auto_interval_ == 0;
  }
  return flags_.checkpoint_every > 0 && step % flags_.checkpoint_every == 0;
}

void TrainingRun::save(int64_t step, const nlohmann::json& extra) {
  STRATA_CHECK(model_ != nullptr, "TrainingRun::save before start()");
  if (flags_.checkpoint_dir.empty()) return;
  const std::string path = core::checkpoint_path(flags_.checkpoint_dir, step);
  if (flags_.checkpoint_async) {
    model_->save_checkpoint_async(path, *optimizer_, step, extra);
  } else {
    model_->save_checkpoint(path, *optimizer_, step, extra);
  }
}

void TrainingRun::save_final(int64_t step, const nlohmann::json& extra) {
  if (!checkpoint_due(step)) save(step, extra);
  // The program ends soon: the last checkpoint must be on disk first.
  if (model_ != nullptr) model_->wait_for_checkpoint();
}

std::vector<double> TrainingRun::finish() {
  STRATA_CHECK(report_.has_value(), "TrainingRun::finish before start()");
  simulated_->log();
  return report_->finish();
}

void TrainingRun::add_simulated_fields(nlohmann::json& record) const {
  if (simulated_) simulated_->add_fields(record);
}

double TrainingRun::measured_wall_seconds() const {
  return wall_clock_ ? wall_clock_->seconds() : 0.0;
}

int64_t TrainingRun::measured_steps() const {
  // The steps that ran: a run may stop before last_step (train_lm --compute-budget).
  return std::max<int64_t>(0, steps_ended_ - std::max(warmup_end_, first_step_));
}

}  // namespace strata::programs
