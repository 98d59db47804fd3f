// Pipeline-parallel throughput, idle time and memory of fmnist-mlp on Fashion-MNIST.
//
//   mpirun -np 2 build/bench/bench_pipeline --mode pipeline --schedule 1f1b --micro-batches 8
//   build/bench/bench_pipeline --mode single --threads 2
//   build/bench/bench_pipeline --mode single --micro-batch-rows 128
//
// --mode pipeline runs the model cut into K stages (K = the mpirun world) with
// PipelineExecutor; --mode single runs the whole model in one process, optionally as
// M = batch / rows chunks one after another (gradient accumulation: the same work as a
// pipeline's micro-batches, without the pipeline). Both time --steps steps after --warmup
// and print one line; with --json-out, rank 0 appends one JSON object per run.
// bench/bench_pipeline.py runs the sweep; docs/benchmarks.md, "Pipeline".
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/data/process_grid.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"
#include "strata/parallel/pipeline/schedule_registry.h"
#include "strata/parallel/pipeline/trace.h"
#include "strata/programs/cli.h"

namespace {

using nlohmann::json;
using strata::parallel::Communicator;

struct Config {
  std::string mode = "pipeline";
  std::string data_dir = strata::core::kFashionMnistDir;
  int64_t batch = 1024;
  int warmup = 3;
  int steps = 10;
  int threads = 1;
  double lr = 0.05;
  double momentum = 0.9;
  uint64_t seed = 0;
  // Pipeline mode.
  std::string schedule = "1f1b";
  int micro_batches = 8;
  int virtual_stages = 1;
  std::string partition = "parameters";
  std::string trace_out;
  std::string recompute = "never";
  // Single mode: rows per chunk, 0 for the whole batch at once.
  int64_t micro_batch_rows = 0;
  std::string json_out;
};

void add_flags(CLI::App& app, Config& c) {
  app.add_option("--mode", c.mode, "pipeline (under mpirun -np K) or single (one process)")
      ->check(CLI::IsMember({"pipeline", "single"}));
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
  app.add_option("--batch", c.batch, "Global batch size")->check(CLI::PositiveNumber);
  app.add_option("--warmup", c.warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", c.steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("--threads", c.threads, "Threads per process (LibTorch and BLAS)")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", c.lr, "SGD learning rate")->check(CLI::PositiveNumber);
  app.add_option("--momentum", c.momentum, "SGD momentum")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", c.seed, "Seed of the model's initialization");
  app.add_option("--schedule", c.schedule, "Pipeline schedule")
      ->check(CLI::IsMember(strata::parallel::schedule_names()));
  app.add_option("--micro-batches", c.micro_batches, "Micro-batches per batch (M)")
      ->check(CLI::PositiveNumber);
  app.add_option("--virtual-stages", c.virtual_stages, "Model chunks per rank (interleaved)")
      ->check(CLI::PositiveNumber);
  app.add_option("--partition", c.partition, "Balance stages by parameters or by profiled time")
      ->check(CLI::IsMember({"parameters", "time"}));
  app.add_option("--recompute", c.recompute, "Activation recomputation")
      ->check(CLI::IsMember({"never", "always", "except_last"}));
  app.add_option("--trace-out", c.trace_out,
                 "Write the last timed step of every rank as one Chrome trace (pipeline mode)");
  app.add_option("--micro-batch-rows", c.micro_batch_rows,
                 "Single mode: run the batch as chunks of this many rows (0: all at once)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--json-out", c.json_out, "Append one JSON object per run to this file");
}

// A few distinct batches of the training set, cycled through: the content does not change
// the timing, and holding the whole set (188 MB of floats) would swamp the memory figures.
struct Batches {
  std::vector<at::Tensor> images, labels;
  const at::Tensor& image(int step) const { return images[step % images.size()]; }
  const at::Tensor& label(int step) const { return labels[step % labels.size()]; }
};

Batches load_batches(const Config& c) {
  const auto train =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Train);
  const int64_t count = std::min<int64_t>(4, train.size() / c.batch);
  STRATA_CHECK(count > 0, "--batch ", c.batch, " is larger than the training set (", train.size(),
               ")");
  Batches batches;
  for (int64_t i = 0; i < count; ++i) {
    batches.images.push_back(train.images.slice(0, i * c.batch, (i + 1) * c.batch).clone());
    batches.labels.push_back(train.labels.slice(0, i * c.batch, (i + 1) * c.batch).clone());
  }
  return batches;
}

// A "VmHWM:" or "VmRSS:" line of /proc/self/status, in bytes (0 where there is none).
int64_t proc_status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size())) * 1024;
  }
  return 0;
}

// Restarts the peak-RSS count from the current RSS (Linux >= 4.0), so that the peak is
// the run's and not the data loading's. False where the kernel refuses.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return clear.good();
}

double median(std::vector<double> values) {
  STRATA_CHECK(!values.empty(), "median of no values");
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

at::Tensor cross_entropy(const at::Tensor& output, const at::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

torch::optim::SGD make_optimizer(const std::vector<at::Tensor>& parameters, const Config& c) {
  return torch::optim::SGD(parameters, torch::optim::SGDOptions(c.lr).momentum(c.momentum));
}

// What every run reports, filled in by its mode.
struct Result {
  std::vector<double> step_seconds;  // per timed step
  double loss = 0;                   // of the last step
  json extra = json::object();
};

// The memory figures are taken around the timed run only (see reset_peak_rss).
struct MemoryWindow {
  int64_t start_rss = proc_status_bytes("VmRSS:");
  bool reset = reset_peak_rss();
  int64_t peak() const { return proc_status_bytes("VmHWM:"); }
};

void append_json(const Config& c, const json& line) {
  std::cout << line.dump() << "\n";
  if (c.json_out.empty()) return;
  const auto parent = std::filesystem::path(c.json_out).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream out(c.json_out, std::ios::app);
  STRATA_CHECK(out.is_open(), "--json-out ", c.json_out, ": cannot open for appending");
  out << line.dump() << "\n";
  STRATA_CHECK(out.good(), "--json-out ", c.json_out, ": write failed");
}

json common_fields(const Config& c, const std::vector<double>& step_seconds, double loss) {
  const double step = median(step_seconds);
  return {{"bench", "pipeline"}, {"mode", c.mode},       {"model", "fmnist-mlp"},
          {"batch", c.batch},    {"threads", c.threads}, {"warmup", c.warmup},
          {"steps", c.steps},    {"step_seconds", step}, {"samples_per_s", c.batch / step},
          {"loss", loss}};
}

int run_single(const Config& c) {
  STRATA_CHECK(c.trace_out.empty(), "--trace-out needs --mode pipeline");
  const int64_t rows = c.micro_batch_rows > 0 ? c.micro_batch_rows : c.batch;
  STRATA_CHECK(c.batch % rows == 0, "--batch ", c.batch,
               " is not a multiple of --micro-batch-rows ", rows);
  const int64_t chunks = c.batch / rows;
  strata::core::set_num_threads(c.threads);
  const Batches batches = load_batches(c);
  strata::core::seed_everything(c.seed);
  torch::nn::Sequential model = strata::core::make_fmnist_mlp();
  auto optimizer = make_optimizer(model->parameters(), c);

  const MemoryWindow memory;
  std::vector<double> step_seconds;
  double loss = 0;
  for (int step = 0; step < c.warmup + c.steps; ++step) {
    strata::core::Stopwatch watch;
    optimizer.zero_grad();
    // Each chunk's mean loss scaled by 1/M, as the pipeline does: the gradient is the
    // whole batch's.
    double loss_sum = 0;
    for (int64_t i = 0; i < chunks; ++i) {
      const at::Tensor chunk_loss =
          cross_entropy(model->forward(batches.image(step).narrow(0, i * rows, rows)),
                        batches.label(step).narrow(0, i * rows, rows)) /
          static_cast<double>(chunks);
      chunk_loss.backward();
      loss_sum += chunk_loss.item<double>();
    }
    optimizer.step();
    if (step >= c.warmup) step_seconds.push_back(watch.seconds());
    loss = loss_sum;
  }
  json line = common_fields(c, step_seconds, loss);
  line["micro_batch_rows"] = rows;
  line["micro_batches"] = chunks;
  line["peak_rss_bytes"] = json::array({memory.peak()});
  line["start_rss_bytes"] = json::array({memory.start_rss});
  line["peak_rss_reset"] = memory.reset;
  append_json(c, line);
  return 0;
}

// One value per rank, on every rank.
std::vector<double> gather_values(Communicator& comm, double value) {
  at::Tensor mine = at::full({1}, value, at::kDouble);
  at::Tensor all = at::empty({comm.size(), 1}, at::kDouble);
  comm.allgather(mine, all)->wait();
  return std::vector<double>(all.data_ptr<double>(), all.data_ptr<double>() + comm.size());
}

// Where one rank's step goes (seconds): its instructions by kind, and "outside" them
// (posting the receives, the bookkeeping between instructions, waiting for the last sends,
// the loss broadcast), so that the parts add up to the step.
constexpr std::array<const char*, 5> kStepParts = {"compute", "send", "receive", "sync", "outside"};
std::array<double, kStepParts.size()> step_parts(
    const std::vector<strata::parallel::PipelineInstructionRecord>& records, double step_seconds) {
  using strata::parallel::PipelineOp;
  std::array<double, kStepParts.size()> parts{};
  double busy = 0;
  for (const auto& r : records) {
    size_t part = 3;  // AllReduceGradients, OptimizerStep
    switch (r.instruction.op) {
      case PipelineOp::Forward:
      case PipelineOp::Backward:
      case PipelineOp::BackwardInput:
      case PipelineOp::BackwardWeight: part = 0; break;
      case PipelineOp::SendActivation:
      case PipelineOp::SendGradient: part = 1; break;
      case PipelineOp::RecvActivation:
      case PipelineOp::RecvGradient: part = 2; break;
      default: break;
    }
    parts[part] += r.end - r.start;
    busy += r.end - r.start;
  }
  parts.back() = step_seconds - busy;
  return parts;
}

int run_pipeline(const Config& c) {
  auto world = strata::parallel::MpiCommunicator::world();
  strata::parallel::ProcessGrid grid(
      world, strata::parallel::ProcessGridOptions().pipeline_parallel(world->size()));
  auto comm = grid.pipeline();
  const int rank = comm->rank(), ranks = comm->size();
  STRATA_CHECK(c.batch % c.micro_batches == 0, "--batch ", c.batch,
               " is not a multiple of --micro-batches ", c.micro_batches);
  strata::core::set_num_threads(c.threads);
  const Batches batches = load_batches(c);
  strata::core::seed_everything(c.seed);
  strata::parallel::PipelineParallel pipe(
      strata::core::make_fmnist_mlp(), grid, cross_entropy, batches.image(0),
      strata::parallel::PipelineParallelOptions()
          .schedule(c.schedule)
          .micro_batches(c.micro_batches)
          .virtual_stages(c.virtual_stages)
          .balance(c.partition == "time" ? "time" : "params")
          .recompute(strata::parallel::parse_recompute(c.recompute)));
  const auto& partition = pipe.partition();
  const auto& schedule = pipe.executor().schedule();
  auto optimizer = make_optimizer(pipe.parameters(), c);
  auto* executor = &pipe.executor();

  const MemoryWindow memory;
  std::vector<double> step_seconds, idle;
  std::array<std::vector<double>, kStepParts.size()> parts;
  double loss = 0;
  for (int step = 0; step < c.warmup + c.steps; ++step) {
    optimizer.zero_grad();
    strata::core::Stopwatch watch;
    loss = executor->train_step(batches.image(step), batches.label(step), &optimizer);
    const double seconds = watch.seconds();
    if (step < c.warmup) continue;
    step_seconds.push_back(seconds);
    idle.push_back(strata::parallel::measure_idle(executor->records(), seconds).idle_fraction);
    const auto split = step_parts(executor->records(), seconds);
    for (size_t i = 0; i < parts.size(); ++i) parts[i].push_back(split[i]);
  }
  // A step takes as long as its slowest rank.
  at::Tensor slowest = at::tensor(step_seconds, at::kDouble);
  comm->allreduce(slowest, strata::parallel::ReduceOp::Max)->wait();
  step_seconds.assign(slowest.data_ptr<double>(), slowest.data_ptr<double>() + slowest.numel());

  const auto idle_per_rank = gather_values(*comm, median(idle));
  json breakdown = json::object();  // medians over the timed steps, ms, one per rank
  for (size_t i = 0; i < parts.size(); ++i) {
    std::vector<double> ms = gather_values(*comm, 1000 * median(parts[i]));
    breakdown[kStepParts[i]] = ms;
  }
  const auto saved_per_rank =
      gather_values(*comm, static_cast<double>(executor->peak_saved_bytes()));
  const auto peak_per_rank = gather_values(*comm, static_cast<double>(memory.peak()));
  const auto start_per_rank = gather_values(*comm, static_cast<double>(memory.start_rss));
  if (!c.trace_out.empty()) {
    strata::parallel::PipelineTraceRecorder trace(comm, rank);
    trace.add_step(*executor, c.warmup + c.steps - 1);
    trace.write(c.trace_out);
  }
  if (rank != 0) return 0;

  json line = common_fields(c, step_seconds, loss);
  const auto sim = strata::parallel::simulate_schedule(schedule);
  std::vector<int64_t> peaks(peak_per_rank.begin(), peak_per_rank.end());
  std::vector<int64_t> starts(start_per_rank.begin(), start_per_rank.end());
  line.update({{"schedule", c.schedule},
               {"ranks", ranks},
               {"virtual_stages", c.virtual_stages},
               {"micro_batches", c.micro_batches},
               {"micro_batch_rows", c.batch / c.micro_batches},
               {"partition", c.partition},
               {"recompute", c.recompute},
               {"peak_saved_bytes", saved_per_rank},
               {"balance", partition.balance()},
               {"idle_fraction", idle_per_rank},
               {"step_parts_ms", breakdown},
               {"idle_simulated", sim.idle_fraction},
               {"idle_theory", strata::parallel::theoretical_idle_fraction(
                                   c.schedule, ranks, c.micro_batches, c.virtual_stages)},
               {"peak_rss_bytes", peaks},
               {"start_rss_bytes", starts},
               {"peak_rss_reset", memory.reset}});
  append_json(c, line);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config config;
    CLI::App app{
        "Pipeline-parallel throughput, idle time and memory of fmnist-mlp.\n"
        "--mode pipeline under mpirun -np K; --mode single in one process."};
    strata::programs::configure_cli(app);
    add_flags(app, config);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    return config.mode == "single" ? run_single(config) : run_pipeline(config);
  });
}
