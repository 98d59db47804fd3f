#include "strata/programs/pipeline_flags.h"

#include <spdlog/spdlog.h>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule_registry.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

namespace strata::programs {
using namespace strata::parallel;  // NOLINT(google-build-using-namespace): binds flags to pipeline
                                   // types

namespace {
// Options that only mean something in a pipeline.
const std::vector<std::string> kPipelineOnlyFlags = {
    "--micro-batches", "--schedule",  "--virtual-stages", "--recompute",
    "--balance",       "--trace-out", "--trace-steps",    "--devices"};
constexpr double kBytesPerMb = 1024 * 1024;
}  // namespace

bool PipelineFlags::in_process(int world_size) const {
  return world_size == 1 && options.pipeline_parallel() > 1;
}

std::vector<std::string> PipelineFlags::device_names() const {
  std::vector<std::string> names;
  for (const StageDevice& d : devices) names.push_back(d.name);
  if (names.empty()) names.assign(options.pipeline_parallel(), "cpu");
  return names;
}

int64_t PipelineFlags::replica_batch(int64_t global_batch, int world_size) const {
  const int pp = options.pipeline_parallel();
  const int micro_batches = options.pipeline().micro_batches();
  STRATA_CHECK(in_process(world_size) || world_size % pp == 0, "--pp ", pp, " does not divide the ",
               world_size, " ranks");
  const int replicas = in_process(world_size) ? 1 : world_size / pp;
  STRATA_CHECK(global_batch % replicas == 0, "--batch ", global_batch, " is not divisible by the ",
               replicas, " data-parallel replicas");
  const int64_t rows = global_batch / replicas;
  STRATA_CHECK(pp == 1 || rows % micro_batches == 0, "--batch ", global_batch, " / ", replicas,
               " replicas = ", rows, " rows is not divisible by --micro-batches ", micro_batches);
  return rows;
}

void add_pipeline_flags(CLI::App& app, PipelineFlags& f) {
  PipelineParallelOptions& pipeline = f.options.pipeline();
  integer_range(app.add_option("--pp", f.options.pipeline_parallel(),
                               "Pipeline stages; the world size / pp replicas of each stage train "
                               "data parallel"),
                1, kMaxRanks);
  integer_range(app.add_option("--micro-batches", pipeline.micro_batches(),
                               "Micro-batches per replica batch"),
                1, kMaxMicroBatches);
  app.add_option("--schedule", pipeline.schedule(), "Pipeline schedule")
      ->check(CLI::IsMember(schedule_names()));
  integer_range(app.add_option("--virtual-stages", pipeline.virtual_stages(),
                               "Model chunks per rank (interleaved schedule)"),
                1, kMaxLayers);
  add_enum_option(app, "--recompute", pipeline.recompute(),
                  {{"never", Recompute::Never},
                   {"always", Recompute::Always},
                   {"except_last", Recompute::ExceptLast}},
                  "Activation recomputation");
  app.add_option(
      "--balance", pipeline.balance(),
      "Stage split: params, time, memory, auto, adaptive (time, then re-split from the running "
      "pipeline's layer times), or layers per stage (e.g. 3,5)");
  app.add_option("--devices", f.devices_list,
                 "Device of each stage, or one for all: cpu, accel:<preset or spec file> (a "
                 "simulated accelerator), cuda:<i>. Without mpirun the stages run in one "
                 "process, one thread per device");
  app.add_option("--trace-out", f.trace_out,
                 "Write a Chrome trace (Perfetto, chrome://tracing) of a few pipeline steps");
  integer_range(
      app.add_option("--trace-steps", f.trace_steps, "Steps the trace covers, after the warm-up"),
      1, kMaxTraceSteps);
  // The options count bytes, the flag megabytes.
  positive_real(app.add_option_function<double>(
                    "--bucket-cap-mb",
                    [&pipeline](double mb) {
                      pipeline.bucket_cap_bytes(static_cast<int64_t>(mb * kBytesPerMb));
                    },
                    "Data-parallel gradient bucket size in MB"),
                kMaxBucketMb)
      ->default_str(
          fmt::format("{}", static_cast<double>(pipeline.bucket_cap_bytes()) / kBytesPerMb));
}

void check_pipeline_flags(const CLI::App& app, PipelineFlags& flags) {
  const int pp = flags.options.pipeline_parallel();
  if (pp <= 1) {
    for (const std::string& flag : kPipelineOnlyFlags)
      STRATA_CHECK(app.count(flag) == 0, flag, " needs --pp 2 or more");
    return;
  }
  const CLI::Option* threads = app.get_option_no_throw("--threads");
  if (threads != nullptr && threads->count() > 0) flags.worker_threads = threads->as<int>();
  if (app.count("--devices") == 0) return;
  flags.devices = parse_stage_devices(flags.devices_list, pp);
  flags.options.pipeline().devices(devices_of(flags.devices)).move_module(stage_mover());
}

void add_pipeline_fields(nlohmann::json& record, const PipelineFlags& flags,
                         const std::vector<double>& idle) {
  if (flags.options.pipeline_parallel() <= 1) return;
  const PipelineParallelOptions& pipeline = flags.options.pipeline();
  record["schedule"] = pipeline.schedule();
  record["micro_batches"] = pipeline.micro_batches();
  record["devices"] = flags.device_names();
  record["idle_fraction"] = idle;
}

PipelineReport::PipelineReport(const PipelineFlags& flags, PipelineParallel* pipeline)
    : flags_(flags), pipeline_(pipeline) {
  if (pipeline_ != nullptr && !flags.trace_out.empty())
    trace_.emplace(pipeline_->grid().world(), pipeline_->grid().rank());
}

void PipelineReport::record(int64_t step, int64_t first_measured_step, double seconds) {
  if (pipeline_ == nullptr || step < first_measured_step) return;
  const std::vector<const PipelineExecutor*> executors = pipeline_->executors();
  busy_.resize(executors.size());
  for (size_t i = 0; i < executors.size(); ++i)
    busy_[i] += measure_idle(executors[i]->records(), seconds).busy;
  wall_ += seconds;
  if (trace_ && trace_->steps() < flags_.trace_steps)
    trace_->add_step(executors, static_cast<int>(step));
}

std::vector<double> PipelineReport::finish() {
  if (pipeline_ == nullptr) return {};
  const PipelineParallelOptions& pipeline = flags_.options.pipeline();
  // One entry per pipeline rank of every process (an in-process pipeline has several).
  auto& world = *pipeline_->grid().world();
  const int here = static_cast<int>(pipeline_->executors().size());
  at::Tensor all = at::zeros({world.size() * here}, at::kDouble);
  for (int i = 0; i < here; ++i)
    all[world.rank() * here + i] = wall_ > 0 && !busy_.empty() ? 1.0 - busy_[i] / wall_ : 0.0;
  world.allreduce(all)->wait();
  const std::vector<double> idle(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  std::string line;
  for (size_t r = 0; r < idle.size(); ++r)
    line += fmt::format("{}{:.1f}%", r == 0 ? "" : " ", 100 * idle[r]);
  spdlog::info(
      "idle fraction per rank: {} (theory {:.1f}% with equal stages)", line,
      100 * theoretical_idle_fraction(pipeline.schedule(), flags_.options.pipeline_parallel(),
                                      pipeline.micro_batches(), pipeline.virtual_stages()));
  if (trace_) {
    trace_->write(flags_.trace_out);
    spdlog::info("pipeline trace of {} step(s) written to {}", trace_->steps(), flags_.trace_out);
  }
  return idle;
}

}  // namespace strata::programs
