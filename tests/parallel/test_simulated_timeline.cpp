// The pipeline's timeline in another time than the wall clock: the executor asks an
// InstructionClock for every instruction's duration, and replay_records plays the schedule
// on them with simulate_schedule's one replay.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <atomic>

#include "comm_test_support.h"
#include "strata/core/error.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"
#include "strata/parallel/pipeline/trace.h"

namespace strata::parallel::testing {
namespace {

// Known costs per instruction, as simulate_schedule's PipelineCosts price them.
class KnownCosts : public InstructionClock {
 public:
  explicit KnownCosts(PipelineCosts costs) : costs_(costs) {}
  void begin(int, const PipelineInstruction&) override { ++begun_; }
  double end(int, const PipelineInstruction& in, int64_t bytes) override {
    switch (in.op) {
      case PipelineOp::Forward: return costs_.forward;
      case PipelineOp::Backward: return costs_.backward_input + costs_.backward_weight;
      case PipelineOp::BackwardInput: return costs_.backward_input;
      case PipelineOp::BackwardWeight: return costs_.backward_weight;
      case PipelineOp::SendActivation:
      case PipelineOp::SendGradient:
        EXPECT_GT(bytes, 0) << to_string(in);  // the tensor it sent
        return costs_.send;
      default: return 0;
    }
  }
  int begun() const { return begun_; }

 private:
  PipelineCosts costs_;
  std::atomic<int> begun_{0};
};

torch::nn::Sequential make_model() {
  torch::nn::Sequential model;
  for (int i = 0; i < 8; ++i) model->push_back(torch::nn::Linear(4, 4));
  return model;
}

at::Tensor mse(const at::Tensor& output, const at::Tensor& target) {
  return torch::nn::functional::mse_loss(output, target);
}

// Stages whose every pass costs what PipelineCosts says reproduce simulate_schedule's
// timeline exactly, every transfer on the link from its sender to its receiver.
TEST(SimulatedTimeline, KnownCostsReplayAsSimulateSchedule) {
  const PipelineCosts costs{1.0, 1.5, 0.75, 0.25};
  for (const std::string schedule : {"gpipe", "1f1b", "zb-h1", "interleaved"})
    for (const int ranks : {2, 4})
      for (const int micro_batches : {1, 4, 8}) {
        const int virtual_stages = schedule == "interleaved" ? 2 : 1;
        if (schedule == "interleaved" && micro_batches % ranks != 0) continue;
        SCOPED_TRACE(schedule + " K " + std::to_string(ranks) + " M " +
                     std::to_string(micro_batches));
        run_in_process(1, [&](Communicator& comm) {
          const at::Tensor inputs = at::randn({8 * micro_batches, 4});
          ProcessGrid grid(comm.shared_from_this());
          PipelineParallel pipe(make_model(), grid, mse, inputs,
                                PipelineParallelOptions()
                                    .devices(std::vector<c10::Device>(ranks, c10::kCPU))
                                    .schedule(schedule)
                                    .micro_batches(micro_batches)
                                    .virtual_stages(virtual_stages));
          auto clock = std::make_shared<KnownCosts>(costs);
          EXPECT_FALSE(replay_records(pipe.executors()).has_value());  // no step yet
          pipe.set_instruction_clock(clock);
          pipe.train_step(inputs, at::randn({8 * micro_batches, 4}));
          const PipelineSchedule& s = pipe.executor().schedule();
          size_t instructions = 0;
          for (const auto& program : s.ranks) instructions += program.size();
          EXPECT_EQ(clock->begun(), static_cast<int>(instructions));

          const auto replayed = replay_records(pipe.executors());
          ASSERT_TRUE(replayed.has_value());
          const PipelineSimulation expected = simulate_schedule(s, costs);
          EXPECT_EQ(replayed->makespan, expected.makespan);
          EXPECT_EQ(replayed->idle_fraction, expected.idle_fraction);
          EXPECT_EQ(replayed->busy, expected.busy);
          EXPECT_EQ(replayed->intervals, expected.intervals);

          // One transfer per send, from its rank to its peer, taking the send's cost.
          size_t sends = 0;
          for (int r = 0; r < s.num_ranks; ++r)
            for (const auto& in : s.ranks[r])
              sends += in.op == PipelineOp::SendActivation || in.op == PipelineOp::SendGradient;
          ASSERT_EQ(replayed->transfers.size(), sends);
          for (const auto& t : replayed->transfers) {
            const PipelineInstruction& in = s.ranks[t.from][t.instruction];
            EXPECT_TRUE(in.op == PipelineOp::SendActivation || in.op == PipelineOp::SendGradient);
            EXPECT_EQ(t.to, in.peer);
            EXPECT_DOUBLE_EQ(t.end - t.start, costs.send);
          }
        });
      }
}

// The trace holds the simulated timeline beside the wall-clock one: a row per rank and a
// row per link.
TEST(SimulatedTimeline, TraceHasARowPerDeviceAndPerLink) {
  run_in_process(1, [&](Communicator& comm) {
    const at::Tensor inputs = at::randn({16, 4});
    ProcessGrid grid(comm.shared_from_this());
    PipelineParallel pipe(make_model(), grid, mse, inputs,
                          PipelineParallelOptions()
                              .devices({c10::kCPU, c10::kCPU})
                              .schedule("1f1b")
                              .micro_batches(4));
    pipe.set_instruction_clock(std::make_shared<KnownCosts>(PipelineCosts{1, 1, 1, 0.5}));
    PipelineTraceRecorder recorder(comm.shared_from_this(), 0);
    pipe.train_step(inputs, at::randn({16, 4}));
    recorder.add_step(pipe.executors(), 0);
    const core::ChromeTrace trace = recorder.trace();
    const std::string text = trace.to_json().dump();
    EXPECT_NE(text.find("simulated time"), std::string::npos);
    EXPECT_NE(text.find("rank 0 on cpu"), std::string::npos);
    EXPECT_NE(text.find("rank 1 on cpu"), std::string::npos);
    EXPECT_NE(text.find("link 0->1"), std::string::npos);
    EXPECT_NE(text.find("link 1->0"), std::string::npos);
  });
}

TEST(SimulatedTimeline, DurationsMustFitTheSchedule) {
  const PipelineSchedule s = make_1f1b_schedule(2, 2);
  EXPECT_THROW(simulate_schedule(s, PipelineDurations(1)), Error);
  PipelineDurations negative;
  for (const auto& program : s.ranks) negative.emplace_back(program.size(), 1.0);
  negative[1][0] = -1;
  EXPECT_THROW(simulate_schedule(s, negative), Error);
}

}  // namespace
}  // namespace strata::parallel::testing
