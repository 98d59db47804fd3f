// Wall time of training steps on the simulated accelerator (accel's PrivateUse1 device)
// against the same steps on the CPU: fmnist-cnn and fmnist-mlp (docs/BENCHMARKS.md),
// batch 256, SGD lr 0.05 momentum 0.9, synthetic inputs, one thread by default; and what
// the Simulator charges per layer on every preset (suite "layers").
//
//   bench_accel_device [--suites time,layers] [--models cnn,mlp] [--runs 5] [--threads 1]
//                      [--min-ms 300]
//
// One JSON line per model and case: value = device ms per step, baseline = CPU ms per
// step, ratio = CPU time / device time of the same run (median over runs; the target is
// ratio >= 1/1.5), slowdown = 1 / ratio. Case "train_step_recording" has an OpRecorder
// installed that counts the ops; "train_step_simulator" has the Simulator installed,
// charging every op and transfer to the generic-32 preset's cost models.
//
// Suite "layers": one JSON line per preset and layer of an fmnist-cnn training step
// (batch 256, forward, loss, backward, SGD step) and a fortunes-lm forward pass (batch 32
// x 128 tokens), run on the device under the Simulator: case "<preset>/<model>/<layer>",
// value = simulated cycles, baseline = stall-free cycles, ratio = cycles / stall-free,
// with utilization and energy_uj; layer "total" is the whole step.

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <iostream>

#include "bench_common.h"
#include "strata/accel/device.h"
#include "strata/accel/op_recorder.h"
#include "strata/accel/pipeline_placement.h"
#include "strata/accel/simulator.h"
#include "strata/accel/to_device.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/threads.h"
#include "strata/programs/cli.h"

namespace {

namespace accel = strata::accel;
namespace core = strata::core;

struct Flags {
  std::vector<std::string> suites = {"time", "layers"};
  std::vector<std::string> models = {"cnn", "mlp"};
  int runs = 5;
  int threads = 1;
  double min_ms = 300;
  int64_t batch = 256;
};

// Counts ops and transfers without keeping them: the recording cost alone.
struct CountOnly : accel::OpRecorder {
  std::atomic<int64_t> ops{0}, transfers{0};
  void on_op(const accel::DeviceOp&) override { ++ops; }
  void on_transfer(const accel::DeviceTransfer&) override { ++transfers; }
};

struct Trainer {
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::SGD> optimizer;
  at::Tensor x, y;

  Trainer(const std::string& name, c10::Device device, const at::Tensor& x_cpu,
          const at::Tensor& y_cpu) {
    torch::manual_seed(0);
    model = core::make_fmnist_model(name);
    accel::to_device(model, device);
    // After moving: the optimizer's state is made where the parameters are.
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(),
                                                    torch::optim::SGDOptions(0.05).momentum(0.9));
    x = x_cpu.to(device);
    y = y_cpu.to(device);
  }
  void step() {
    optimizer->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    optimizer->step();
  }
};

void print(nlohmann::json line, const Flags& f, double ratio) {
  line["slowdown"] = ratio > 0 ? 1.0 / ratio : 0.0;
  line["threads"] = f.threads;
  line["batch"] = f.batch;
  std::cout << line.dump() << std::endl;
}

void print_layers(const std::string& preset, const std::string& model,
                  const accel::CostReport& report) {
  auto line = [&](const std::string& layer, const accel::CostTotal& t) {
    const accel::OpCost& c = t.cost;
    const double stall_free = static_cast<double>(c.compute_cycles);
    nlohmann::json j = strata::bench::json_line("accel_device", preset + "/" + model + "/" + layer,
                                                static_cast<double>(c.cycles), "cycles", stall_free,
                                                stall_free > 0 ? c.cycles / stall_free : 0.0, 1);
    j["utilization"] = c.utilization();
    j["energy_uj"] = c.energy_pj() * 1e-6;
    j["calls"] = t.calls;
    std::cout << j.dump() << std::endl;
  };
  for (const auto& [layer, t] : report.per_layer()) line(layer, t);
  line("total", report.total());
}

// The simulated cost per layer on every preset (the cost, not the wall time: one run each).
void layers_suite() {
  for (const auto& preset : accel::preset_names()) {
    {
      torch::manual_seed(0);
      const auto x = (torch::rand({256, 1, 28, 28}) - 0.2860) / 0.3530;
      const auto y = torch::randint(0, 10, {256});
      Trainer t("cnn", accel::device(0), x, y);
      auto sim = std::make_shared<accel::Simulator>(preset);
      {
        accel::RecorderScope scope(sim);
        t.optimizer->zero_grad();
        at::Tensor loss;
        {
          accel::LayerScope s("loss");
          loss = torch::nn::functional::cross_entropy(accel::forward_by_layer(t.model, t.x), t.y);
          loss.backward();
        }
        accel::LayerScope s("optimizer");
        t.optimizer->step();
      }
      print_layers(preset, "fmnist-cnn-train", sim->report());
    }
    {
      torch::manual_seed(0);
      auto lm = core::make_transformer_lm();
      accel::to_device(lm, accel::device(0));
      const auto tokens = torch::randint(0, 256, {32, 128}).to(accel::device(0));
      auto sim = std::make_shared<accel::Simulator>(preset);
      {
        torch::NoGradGuard no_grad;
        accel::RecorderScope scope(sim);
        accel::forward_by_layer(lm, tokens);
      }
      print_layers(preset, "fortunes-lm-forward", sim->report());
    }
  }
}

int run(const Flags& f) {
  core::set_num_threads(f.threads);
  const auto wants = [&](const std::string& s) {
    return std::count(f.suites.begin(), f.suites.end(), s) > 0;
  };
  if (wants("layers")) layers_suite();
  if (!wants("time")) return 0;
  for (const auto& name : f.models) {
    torch::manual_seed(1);
    // Normalized as the real data would be (mean 0.2860, std 0.3530).
    const auto x = (torch::rand({f.batch, 1, 28, 28}) - 0.2860) / 0.3530;
    const auto y = torch::randint(0, 10, {f.batch});
    Trainer cpu(name, torch::Device(torch::kCPU), x, y);
    Trainer dev(name, accel::device(0), x, y);
    for (int i = 0; i < 2; ++i) {  // warm-up: allocator, OpenMP pool, autograd threads
      cpu.step();
      dev.step();
    }
    auto t = strata::bench::time_paired(
        f.runs, f.min_ms, [&] { cpu.step(); }, [&] { dev.step(); });
    print(strata::bench::json_line("accel_device", "fmnist-" + name + "/train_step",
                                   1e3 * t.seconds, "ms", 1e3 * t.dense_seconds, t.ratio, f.runs),
          f, t.ratio);
    auto counter = std::make_shared<CountOnly>();
    {
      accel::RecorderScope scope(counter);
      t = strata::bench::time_paired(
          f.runs, f.min_ms, [&] { cpu.step(); }, [&] { dev.step(); });
    }
    nlohmann::json line =
        strata::bench::json_line("accel_device", "fmnist-" + name + "/train_step_recording",
                                 1e3 * t.seconds, "ms", 1e3 * t.dense_seconds, t.ratio, f.runs);
    line["ops_recorded"] = counter->ops.load();
    print(line, f, t.ratio);
    auto sim = std::make_shared<accel::Simulator>("generic-32");
    {
      accel::RecorderScope scope(sim);
      // The report keeps one entry per op (a few dozen per step): a run's steps fit.
      t = strata::bench::time_paired(
          f.runs, f.min_ms, [&] { cpu.step(); }, [&] { dev.step(); });
    }
    line = strata::bench::json_line("accel_device", "fmnist-" + name + "/train_step_simulator",
                                    1e3 * t.seconds, "ms", 1e3 * t.dense_seconds, t.ratio, f.runs);
    line["ops_charged"] = static_cast<int64_t>(sim->report().entries().size());
    print(line, f, t.ratio);
  }
  // The fixed cost of one op through the fallback: an add of two 16-element tensors.
  const auto a = torch::rand({16}), b = torch::rand({16});
  const auto ad = a.to(accel::device(0)), bd = b.to(accel::device(0));
  auto t = strata::bench::time_paired(
      f.runs, f.min_ms, [&] { a.add(b); }, [&] { ad.add(bd); });
  print(strata::bench::json_line("accel_device", "small_op/add16", 1e6 * t.seconds, "us",
                                 1e6 * t.dense_seconds, t.ratio, f.runs),
        f, t.ratio);
  {
    // The same op charged by the Simulator: the fixed cost of recording and charging.
    auto sim = std::make_shared<accel::Simulator>("generic-32");
    accel::RecorderScope scope(sim);
    t = strata::bench::time_paired(
        f.runs, f.min_ms, [&] { a.add(b); }, [&] { ad.add(bd); });
  }
  print(strata::bench::json_line("accel_device", "small_op/add16_simulator", 1e6 * t.seconds, "us",
                                 1e6 * t.dense_seconds, t.ratio, f.runs),
        f, t.ratio);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    Flags f;
    CLI::App app("Training steps on the simulated accelerator device against the CPU");
    strata::programs::configure_cli(app);
    app.add_option("--suites", f.suites,
                   "time (wall time against CPU), layers (simulated cost per layer)")
        ->delimiter(',');
    app.add_option("--models", f.models, "fmnist models: cnn, mlp")->delimiter(',');
    app.add_option("--runs", f.runs, "timed runs (median)")->check(CLI::PositiveNumber);
    app.add_option("--threads", f.threads, "intra-op threads")->check(CLI::PositiveNumber);
    app.add_option("--min-ms", f.min_ms, "least milliseconds per run and side")
        ->check(CLI::PositiveNumber);
    app.add_option("--batch", f.batch, "batch size")->check(CLI::PositiveNumber);
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    return run(f);
  });
}
