// What the control plane costs a training step: the flight recorder behind every
// communicator operation and pipeline instruction, and the watchdog's heartbeat thread.
//
//   build/bench/bench_control_plane [--runs 5]
//
// Cases (each the median of paired runs, baseline and control plane back to back):
// - "step fmnist-mlp": one data-parallel training step of fmnist-mlp (batch 128, one
//   rank, gradients all-reduced parameter by parameter) on a plain communicator, against
//   the same step on a recorded communicator inside a recorded step, with a watchdog
//   beating every 100 ms (ten times the default rate for --timeout >= 10 s);
// - "allreduce 4 floats": one tiny all-reduce, plain against recorded (the recorder's
//   cost per operation where it is largest relative to the work).
#include <torch/torch.h>

#include <cstdio>

#include "bench_common.h"
#include "strata/core/flight_recorder.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/threads.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/comm/recording_communicator.h"
#include "strata/parallel/control/control_store.h"
#include "strata/parallel/control/watchdog.h"
#include "strata/programs/cli.h"

namespace {

using strata::parallel::Communicator;

struct Trainer {
  torch::nn::Sequential model = strata::core::make_fmnist_model("mlp");
  torch::optim::SGD optimizer{model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9)};
  at::Tensor images = torch::randn({128, 1, 28, 28});
  at::Tensor labels = torch::randint(0, 10, {128});

  void step(Communicator& comm) {
    optimizer.zero_grad();
    torch::nn::functional::cross_entropy(model->forward(images), labels).backward();
    for (auto& p : model->parameters())
      comm.allreduce(p.mutable_grad(), strata::parallel::ReduceOp::Avg)->wait();
    optimizer.step();
  }
};

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    int runs = 5;
    CLI::App app{"Cost of the control plane (flight recorder, watchdog) on a training step."};
    strata::programs::configure_cli(app);
    app.add_option("--runs", runs, "Paired runs per case")->check(CLI::PositiveNumber);
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    strata::core::set_num_threads(1);

    auto plain = strata::parallel::InProcessCommunicator::create(1)[0];
    auto recorded = strata::parallel::record_operations(plain);
    strata::parallel::ControlStoreServer server;
    strata::parallel::Watchdog watchdog(
        std::make_shared<strata::parallel::ControlStoreClient>(server.address()), 0, 1,
        strata::parallel::WatchdogOptions()
            .timeout(std::chrono::seconds(60))
            .heartbeat_interval(std::chrono::milliseconds(100)));

    Trainer trainer;
    const auto step = strata::bench::time_paired(
        runs, 1500, [&] { trainer.step(*plain); },
        [&] {
          strata::core::FlightRecordScope record("train step");
          trainer.step(*recorded);
        });
    std::printf(
        "fmnist-mlp step (batch 128, 1 thread): %.3f ms plain, %.3f ms with recorder + watchdog "
        "(plain / control plane %.4f)\n",
        1e3 * step.dense_seconds, 1e3 * step.seconds, step.ratio);
    std::puts(strata::bench::json_line("control_plane", "step fmnist-mlp", 1e3 * step.seconds, "ms",
                                       1e3 * step.dense_seconds, step.ratio, runs)
                  .dump()
                  .c_str());

    at::Tensor tiny = at::ones({4});
    const auto op = strata::bench::time_paired(
        runs, 300, [&] { plain->allreduce(tiny)->wait(); },
        [&] { recorded->allreduce(tiny)->wait(); });
    std::printf(
        "allreduce of 4 floats on 1 rank: %.2f us plain, %.2f us recorded (+%.2f us per "
        "operation)\n",
        1e6 * op.dense_seconds, 1e6 * op.seconds, 1e6 * (op.seconds - op.dense_seconds));
    std::puts(strata::bench::json_line("control_plane", "allreduce 4 floats", 1e6 * op.seconds,
                                       "us", 1e6 * op.dense_seconds, op.ratio, runs)
                  .dump()
                  .c_str());
    watchdog.stop();
    return 0;
  });
}
