// Pipeline traces: idle fractions from records, the bubble formulas, the trace's rows and
// boxes, and gathering every rank's trace onto one.
#include <torch/torch.h>

#include <gmock/gmock.h>

#include "comm_test_support.h"
#include "strata/core/error.h"
#include "strata/parallel/pipeline/trace.h"

namespace strata::parallel::testing {
namespace {

using ::testing::HasSubstr;

PipelineInstructionRecord record(PipelineOp op, int stage, int micro_batch, double start,
                                 double end, int peer = -1) {
  return {PipelineInstruction{op, stage, micro_batch, peer}, start, end};
}

// Rank 1 of a 2-rank 1F1B step with M = 1, by hand: wait 1 s for the activation, forward
// 1 s, backward 2 s, send the gradient, step.
std::vector<PipelineInstructionRecord> last_rank_records() {
  return {record(PipelineOp::RecvActivation, 0, 0, 0.0, 1.0, 0),
          record(PipelineOp::Forward, 1, 0, 1.0, 2.0),
          record(PipelineOp::Backward, 1, 0, 2.0, 4.0),
          record(PipelineOp::SendGradient, 1, 0, 4.0, 4.0, 0),
          record(PipelineOp::AllReduceGradients, -1, -1, 4.0, 4.0),
          record(PipelineOp::OptimizerStep, -1, -1, 4.0, 4.5)};
}

TEST(PipelineTrace, IdleFractionCountsOnlyComputeAsBusy) {
  const auto records = last_rank_records();
  EXPECT_DOUBLE_EQ(busy_seconds(records), 3.0);
  const PipelineIdle idle = measure_idle(records);
  EXPECT_DOUBLE_EQ(idle.wall, 4.5);
  EXPECT_DOUBLE_EQ(idle.busy, 3.0);
  EXPECT_DOUBLE_EQ(idle.idle_fraction, 1 - 3.0 / 4.5);

  // Against the whole step (stage 0 finished 1 s later).
  EXPECT_DOUBLE_EQ(measure_idle(records, 6.0).idle_fraction, 0.5);
  // Split backward passes are compute too; only the span counts as wall.
  const std::vector<PipelineInstructionRecord> split = {
      record(PipelineOp::Forward, 0, 0, 2.0, 3.0),
      record(PipelineOp::BackwardInput, 0, 0, 4.0, 5.0),
      record(PipelineOp::BackwardWeight, 0, 0, 5.0, 6.0)};
  EXPECT_DOUBLE_EQ(measure_idle(split).wall, 4.0);
  EXPECT_DOUBLE_EQ(measure_idle(split).idle_fraction, 0.25);

  const PipelineIdle none = measure_idle({});
  EXPECT_EQ(none.wall, 0);
  EXPECT_EQ(none.idle_fraction, 0);
  expect_error([&] { measure_idle(records, 2.0); },
               "pipeline idle: 3 s of compute in a wall time of 2 s");
}

TEST(PipelineTrace, TheoryMatchesThePublishedBubbles) {
  EXPECT_DOUBLE_EQ(theoretical_idle_fraction("gpipe", 2, 8), 1.0 / 9);
  EXPECT_DOUBLE_EQ(theoretical_idle_fraction("1f1b", 4, 8), 3.0 / 11);
  EXPECT_DOUBLE_EQ(theoretical_idle_fraction("1f1b", 1, 8), 0.0);
  EXPECT_DOUBLE_EQ(theoretical_idle_fraction("interleaved", 4, 8, 2), 3.0 / 19);
  EXPECT_DOUBLE_EQ(theoretical_idle_fraction("interleaved", 4, 8, 1), 3.0 / 11);
  EXPECT_DOUBLE_EQ(theoretical_idle_fraction("zb-h1", 4, 8), 3.0 / 27);

  // The simulator with equal pass costs agrees where the formula is exact.
  for (const auto& [name, v] : std::vector<std::pair<std::string, int>>{
           {"gpipe", 1}, {"1f1b", 1}, {"interleaved", 2}, {"zb-h1", 1}}) {
    SCOPED_TRACE(name);
    const PipelineSchedule schedule = make_pipeline_schedule(name, 4, 8, v);
    const PipelineSimulation sim = simulate_schedule(schedule);
    EXPECT_NEAR(sim.idle_fraction[0], theoretical_idle_fraction(name, 4, 8, v), 1e-12);
  }

  // The schedule's own errors: the name and the shape are the registry's to check.
  expect_error([] { theoretical_idle_fraction("pipedream", 2, 4); },
               "pipeline schedule name: got 'pipedream', expected one of gpipe, 1f1b, "
               "interleaved, zb-h1");
  expect_error([] { theoretical_idle_fraction("1f1b", 2, 4, 2); },
               "pipeline schedule '1f1b': virtual_stages must be 1");
  expect_error([] { theoretical_idle_fraction("interleaved", 4, 6, 2); },
               "micro_batches (6) must be a multiple of ranks (4)");
  expect_error([] { theoretical_idle_fraction("gpipe", 2, 0); }, "K 2, M 0, v 1");
}

TEST(PipelineTrace, RowsPerStageAndCommWithMicroBatchArgs) {
  core::ChromeTrace trace;
  add_pipeline_records(trace, last_rank_records(), /*pid=*/1, /*offset_us=*/100.0, /*step=*/7);
  ASSERT_EQ(trace.size(), 6u);
  const nlohmann::json events = trace.to_json()["traceEvents"];
  // Metadata: the process, then rows by tid: stage 1, comm, step.
  ASSERT_EQ(events.size(), 10u);
  EXPECT_EQ(events[0]["args"]["name"], "rank 1");
  EXPECT_EQ(events[1]["tid"], 1);
  EXPECT_EQ(events[1]["args"]["name"], "stage 1");
  EXPECT_EQ(events[2]["tid"], kTraceCommRow);
  EXPECT_EQ(events[2]["args"]["name"], "comm");
  EXPECT_EQ(events[3]["args"]["name"], "step");

  const nlohmann::json& recv = events[4];
  EXPECT_EQ(recv["name"], "recv-act(stage 0 <- rank 0, mb 0)");
  EXPECT_EQ(recv["cat"], "comm");
  EXPECT_EQ(recv["tid"], kTraceCommRow);
  EXPECT_EQ(recv["ts"], 100.0);
  EXPECT_EQ(recv["dur"], 1e6);
  EXPECT_EQ(recv["args"]["peer"], 0);
  const nlohmann::json& forward = events[5];
  EXPECT_EQ(forward["name"], "forward");
  EXPECT_EQ(forward["cat"], "compute");
  EXPECT_EQ(forward["pid"], 1);
  EXPECT_EQ(forward["tid"], 1);
  EXPECT_EQ(forward["ts"], 100.0 + 1e6);
  EXPECT_EQ(forward["args"], nlohmann::json({{"step", 7}, {"stage", 1}, {"micro_batch", 0}}));
  EXPECT_EQ(events[6]["name"], "backward");
  EXPECT_EQ(events[6]["dur"], 2e6);
  EXPECT_EQ(events[9]["name"], "optimizer-step");
  EXPECT_EQ(events[9]["tid"], kTraceStepRow);
  EXPECT_FALSE(events[9]["args"].contains("micro_batch"));

  core::ChromeTrace split;
  add_pipeline_records(split,
                       {record(PipelineOp::BackwardInput, 2, 3, 0, 1),
                        record(PipelineOp::BackwardWeight, 2, 3, 1, 2)},
                       0, 0, 0);
  const nlohmann::json split_events = split.to_json()["traceEvents"];
  EXPECT_EQ(split_events[2]["name"], "B");
  EXPECT_EQ(split_events[3]["name"], "W");
  EXPECT_EQ(split_events[3]["args"]["micro_batch"], 3);
}

TEST(PipelineTrace, GatherMergesEveryRankOnRoot) {
  for (int world_size : {2, 4}) {
    for (int root : {0, world_size - 1}) {
      SCOPED_TRACE("world size " + std::to_string(world_size) + ", root " + std::to_string(root));
      run_in_process(world_size, [root](Communicator& comm) {
        core::ChromeTrace local;
        // Rank r adds r + 1 boxes, so every rank's share is visible in the count.
        for (int i = 0; i <= comm.rank(); ++i)
          add_pipeline_records(local, {record(PipelineOp::Forward, comm.rank(), i, i, i + 0.5)},
                               comm.rank(), 0, 0);
        const core::ChromeTrace merged = gather_trace(comm, local, root);
        if (comm.rank() != root) {
          EXPECT_TRUE(merged.empty());
          return;
        }
        const int n = comm.size();
        EXPECT_EQ(merged.size(), static_cast<size_t>(n * (n + 1) / 2));
        const nlohmann::json events = merged.to_json()["traceEvents"];
        for (int r = 0; r < n; ++r)
          EXPECT_EQ(events[r]["args"]["name"], "rank " + std::to_string(r));
        // The last event is the last rank's last box.
        EXPECT_EQ(events.back()["pid"], n - 1);
        EXPECT_EQ(events.back()["args"]["micro_batch"], n - 1);
      });
    }
  }
  run_in_process(2, [](Communicator& comm) {
    expect_error([&] { gather_trace(comm, {}, 2); },
                 "gather trace: root 2 is not a rank of a communicator of 2");
  });
}

}  // namespace
}  // namespace strata::parallel::testing
