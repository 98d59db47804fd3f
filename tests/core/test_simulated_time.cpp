// A pipeline on two simulated accelerators in simulated time (programs/simulated_time.h):
// every instruction gets its own device's charges while both workers charge at once, every
// send its link's time, and the run's report sums the replayed steps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "strata/accel/device.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/pipeline/trace.h"
#include "strata/programs/simulated_time.h"

namespace strata::programs {
namespace {

using parallel::PipelineOp;

struct Pipeline {
  std::vector<StageDevice> devices = parse_stage_devices("accel:nvdla,accel:shidiannao", 2);
  std::unique_ptr<parallel::PipelineParallel> pipe;
  at::Tensor inputs = at::randn({32, 6}), targets = at::randn({32, 3});

  explicit Pipeline(const std::string& schedule) {
    torch::nn::Sequential model(torch::nn::Linear(6, 32), torch::nn::ReLU(),
                                torch::nn::Linear(32, 32), torch::nn::Linear(32, 3));
    parallel::ProcessGrid grid(parallel::InProcessCommunicator::create(1)[0]);
    pipe = std::make_unique<parallel::PipelineParallel>(
        model, grid, [](const at::Tensor& y, const at::Tensor& t) { return torch::mse_loss(y, t); },
        inputs,
        parallel::PipelineParallelOptions()
            .devices(devices_of(devices))
            .move_module(stage_mover())
            .schedule(schedule)
            .micro_batches(4)
            .balance("2,2"));
  }
};

bool is_send(PipelineOp op) {
  return op == PipelineOp::SendActivation || op == PipelineOp::SendGradient;
}

// Both workers charge their devices at once; each instruction still gets its own device's
// ops: every micro-batch's forward of a stage costs the same (the same ops on the same
// shapes; a backward's gradient accumulation differs between the first micro-batch and
// the others), the two devices differ, and a rank's instructions add up to what its
// device was charged in the step.
TEST(SimulatedTime, EachInstructionGetsItsOwnDevicesCharges) {
  for (const std::string schedule : {"1f1b", "zb-h1"}) {
    SCOPED_TRACE(schedule);
    Pipeline p(schedule);
    SimulatedTime simulated(p.pipe.get(), p.devices);
    ASSERT_TRUE(simulated.active());
    const auto& sim = *simulated.simulator();
    for (int step = 0; step < 3; ++step) {
      std::vector<accel::OpCost> before{sim.op_total(0), sim.op_total(1)};
      p.pipe->train_step(p.inputs, p.targets);
      const auto executors = p.pipe->executors();
      std::map<std::pair<int, PipelineOp>, double> first;  // (stage, op) -> duration
      for (int r = 0; r < 2; ++r) {
        double compute = 0;
        for (const auto& record : executors[r]->records()) {
          const auto& in = record.instruction;
          ASSERT_GE(record.simulated, 0) << to_string(in);
          if (is_send(in.op) || in.op == PipelineOp::RecvActivation ||
              in.op == PipelineOp::RecvGradient)
            continue;
          compute += record.simulated;
          if (!parallel::is_compute(in.op)) continue;
          EXPECT_GT(record.simulated, 0) << to_string(in);
          if (in.op != PipelineOp::Forward) continue;
          const auto [it, fresh] = first.emplace(std::make_pair(in.stage, in.op), record.simulated);
          if (!fresh) EXPECT_EQ(record.simulated, it->second) << to_string(in);
        }
        const auto& spec = *p.devices[r].spec;
        const double charged =
            static_cast<double>(sim.op_total(r).cycles - before[r].cycles) / (spec.clock_mhz * 1e6);
        EXPECT_NEAR(compute, charged, 1e-9 * charged) << "rank " << r;
      }
      EXPECT_NE(first.at({0, PipelineOp::Forward}), first.at({1, PipelineOp::Forward}));
    }
  }
}

// A send takes its link's time for the bytes it moved (the slower end's DRAM bandwidth, or
// a link option), and the replayed step puts it on the link between the two ranks.
TEST(SimulatedTime, SendsAreChargedToTheirLink) {
  Pipeline p("1f1b");
  SimulatedTime simulated(p.pipe.get(), p.devices);
  p.pipe->train_step(p.inputs, p.targets);
  SimulatedClock clock(simulated.simulator(), p.devices);
  SimulatedClock fast(simulated.simulator(), p.devices,
                      LinkOptions().gbytes_per_s(1).latency_us(2));
  const auto executors = p.pipe->executors();
  int sends = 0;
  for (int r = 0; r < 2; ++r)
    for (const auto& record : executors[r]->records()) {
      if (!is_send(record.instruction.op)) continue;
      ++sends;
      // Each message is a micro-batch of 8 rows of 32 floats (activations and gradients).
      EXPECT_EQ(record.simulated, clock.link_seconds(r, 1 - r, 8 * 32 * 4));
      EXPECT_GT(record.simulated, 0);
    }
  EXPECT_EQ(sends, 8);
  EXPECT_DOUBLE_EQ(fast.link_seconds(0, 1, 1000), 2e-6 + 1000 / 1e9);
  const auto replayed = parallel::replay_records(executors);
  ASSERT_TRUE(replayed.has_value());
  ASSERT_EQ(replayed->transfers.size(), 8u);
  for (const auto& t : replayed->transfers) EXPECT_EQ(t.to, 1 - t.from);
}

// The measured steps' figures for the final record.
TEST(SimulatedTime, ReportsSamplesIdleUtilizationAndEnergy) {
  Pipeline p("gpipe");
  SimulatedTime simulated(p.pipe.get(), p.devices);
  nlohmann::json record;
  simulated.add_fields(record);
  EXPECT_TRUE(record.empty());  // nothing measured yet
  for (int step = 0; step < 3; ++step) {
    p.pipe->train_step(p.inputs, p.targets);
    simulated.record(step, /*first_measured_step=*/1, /*samples=*/32);
  }
  simulated.add_fields(record);
  ASSERT_EQ(record["device"], (nlohmann::json{"accel:nvdla", "accel:shidiannao"}));
  EXPECT_GT(record["simulated_samples_per_s"].get<double>(), 0);
  EXPECT_GT(record["energy_uj"].get<double>(), 0);
  for (const std::string key : {"simulated_idle_fraction", "simulated_utilization"}) {
    ASSERT_EQ(record[key].size(), 2u) << key;
    for (const double v : record[key]) {
      EXPECT_GE(v, 0) << key;
      EXPECT_LT(v, 1) << key;
    }
  }
  // Two measured steps: samples/s is 64 samples over the replayed makespans.
  const auto replayed = parallel::replay_records(p.pipe->executors());
  EXPECT_GT(record["simulated_samples_per_s"].get<double>(), 0.5 * 32 / replayed->makespan);
}

// No simulated stage: nothing installed, nothing reported.
TEST(SimulatedTime, InactiveOnTheCpu) {
  const std::vector<StageDevice> cpus = parse_stage_devices("cpu", 2);
  SimulatedTime simulated(nullptr, cpus);
  EXPECT_FALSE(simulated.active());
  EXPECT_EQ(accel::op_recorder(), nullptr);
}

}  // namespace
}  // namespace strata::programs
