// The training stall a checkpoint causes, synchronous against --checkpoint-async (issue
// 18): the same schedule of steps (an MLP of --mb MB of fp32 parameters with Adam, so a
// checkpoint is 3x that) is run without checkpoints, with a synchronous checkpoint every
// --every steps, and with the asynchronous writer (copy at the step boundary, write on a
// background thread, wait at the end); the stall per checkpoint is the run's extra wall
// time over the run without checkpoints, divided by the checkpoints written. The three
// are interleaved --runs times (the machine is shared); medians are printed as JSON lines.
//
//   build/bench/bench_checkpoint_async --mb 64 --steps 24 --every 6 --runs 3 --dir /tmp/ck
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "bench_common.h"
#include "strata/core/async_checkpoint.h"
#include "strata/core/checkpoint.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/programs/cli.h"

namespace {

namespace core = strata::core;

struct Config {
  int64_t mb = 64, width = 1024;
  int steps = 24, every = 6, runs = 3, threads = 1;
  std::string dir = "/tmp/strata-bench-checkpoint-async";
};

enum class Mode { None, Sync, Async };

double run_once(const Config& c, Mode mode) {
  torch::manual_seed(0);
  const int64_t layers = std::max<int64_t>(1, c.mb * 1024 * 1024 / 4 / (c.width * c.width));
  torch::nn::Sequential model;
  for (int64_t i = 0; i < layers; ++i) {
    model->push_back(torch::nn::Linear(c.width, c.width));
    model->push_back(torch::nn::Tanh());
  }
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-4));
  const at::Tensor x = torch::randn({32, c.width});
  core::AsyncCheckpointWriter writer;
  std::filesystem::remove_all(c.dir);
  core::Stopwatch clock;
  for (int step = 1; step <= c.steps; ++step) {
    optimizer.zero_grad();
    model->forward(x).pow(2).mean().backward();
    optimizer.step();
    if (mode == Mode::None || step % c.every != 0) continue;
    const std::string path = core::checkpoint_path(c.dir, step);
    const core::CheckpointContents contents = core::checkpoint_contents(*model, &optimizer);
    if (mode == Mode::Sync) {
      core::write_checkpoint(path, contents, step);
    } else {
      writer.submit([path, step, copy = core::copy_checkpoint_contents(contents)] {
        core::write_checkpoint(path, copy, step);
      });
    }
  }
  writer.wait();
  const double seconds = clock.seconds();
  std::filesystem::remove_all(c.dir);
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    Config c;
    CLI::App app{"The training stall per checkpoint: synchronous against asynchronous."};
    strata::programs::configure_cli(app);
    app.add_option("--mb", c.mb, "MB of fp32 parameters (the checkpoint is 3x: Adam)")
        ->check(CLI::PositiveNumber);
    app.add_option("--steps", c.steps, "Training steps per run")->check(CLI::PositiveNumber);
    app.add_option("--every", c.every, "A checkpoint every N steps")->check(CLI::PositiveNumber);
    app.add_option("--runs", c.runs, "Interleaved runs (medians)")->check(CLI::PositiveNumber);
    app.add_option("--threads", c.threads, "Intra-op threads")->check(CLI::PositiveNumber);
    app.add_option("--dir", c.dir, "Scratch directory for the checkpoints (removed)");
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    core::set_num_threads(c.threads);
    const int checkpoints = c.steps / c.every;
    STRATA_CHECK(checkpoints > 0, "--steps ", c.steps, " with --every ", c.every,
                 ": no checkpoint, expected --every <= --steps");
    std::vector<double> none, sync, async;
    for (int r = 0; r < c.runs; ++r) {
      none.push_back(run_once(c, Mode::None));
      sync.push_back(run_once(c, Mode::Sync));
      async.push_back(run_once(c, Mode::Async));
      std::cerr << "run " << r + 1 << "/" << c.runs << ": none " << none.back() << " s, sync "
                << sync.back() << " s, async " << async.back() << " s\n";
    }
    const double base = strata::bench::median(none);
    const double sync_stall = (strata::bench::median(sync) - base) / checkpoints;
    const double async_stall = (strata::bench::median(async) - base) / checkpoints;
    const std::vector<std::pair<std::string, double>> stalls = {{"sync", sync_stall},
                                                                {"async", async_stall}};
    for (const auto& [name, stall] : stalls) {
      nlohmann::json line = strata::bench::json_line("checkpoint_async", name, stall * 1e3, "ms",
                                                     sync_stall * 1e3, stall / sync_stall, c.runs);
      line["mb"] = c.mb;
      line["step_seconds"] = base / c.steps;
      std::cout << line.dump() << std::endl;
    }
    return 0;
  });
}
