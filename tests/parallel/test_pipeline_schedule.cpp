// Pipeline schedules: every generator passes the verifier and has the right passes and
// transfers; the simulator reproduces the textbook bubbles and memory; hand-made broken
// schedules are rejected with a message naming the rank and the instruction.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel::testing {
namespace {

using Op = PipelineOp;

std::map<Op, int> count_ops(const PipelineSchedule& s) {
  std::map<Op, int> counts;
  for (const auto& program : s.ranks)
    for (const auto& in : program) ++counts[in.op];
  return counts;
}

// Every (K, M, v) the generators are tested with: K in {1, 2, 4}, M in {1, 3, 8}; the
// interleaved schedule (v = 2) only where M is a multiple of K, plus M = K and 2K.
struct Shape {
  std::string name;
  int ranks, micro_batches, virtual_stages;
};
std::vector<Shape> all_shapes() {
  std::vector<Shape> shapes;
  for (int k : {1, 2, 4}) {
    for (int m : {1, 3, 8})
      for (const char* name : {"gpipe", "1f1b", "zb-h1"}) shapes.push_back({name, k, m, 1});
    for (int m : {1, 3, 8, k, 2 * k})
      if (m % k == 0) shapes.push_back({"interleaved", k, m, 2});
  }
  return shapes;
}

std::string describe(const Shape& s) {
  return s.name + " K=" + std::to_string(s.ranks) + " M=" + std::to_string(s.micro_batches) +
         " v=" + std::to_string(s.virtual_stages);
}

TEST(PipelineScheduleGenerators, PassTheVerifier) {
  for (const auto& shape : all_shapes()) {
    SCOPED_TRACE(describe(shape));
    const auto s =
        make_pipeline_schedule(shape.name, shape.ranks, shape.micro_batches, shape.virtual_stages);
    EXPECT_EQ(s.name, shape.name);
    EXPECT_EQ(s.num_ranks, shape.ranks);
    EXPECT_EQ(s.num_stages, shape.ranks * shape.virtual_stages);
    EXPECT_EQ(s.num_micro_batches, shape.micro_batches);
    EXPECT_NO_THROW(verify_schedule(s));
  }
}

TEST(PipelineScheduleGenerators, InstructionCounts) {
  for (const auto& shape : all_shapes()) {
    SCOPED_TRACE(describe(shape));
    const auto s =
        make_pipeline_schedule(shape.name, shape.ranks, shape.micro_batches, shape.virtual_stages);
    const int units = s.num_stages * s.num_micro_batches;  // (stage, micro-batch) pairs
    const int transfers = s.num_ranks > 1 ? (s.num_stages - 1) * s.num_micro_batches : 0;
    auto counts = count_ops(s);
    const bool split = shape.name == "zb-h1";
    EXPECT_EQ(counts[Op::Forward], units);
    EXPECT_EQ(counts[Op::Backward], split ? 0 : units);
    EXPECT_EQ(counts[Op::BackwardInput], split ? units : 0);
    EXPECT_EQ(counts[Op::BackwardWeight], split ? units : 0);
    for (Op op : {Op::SendActivation, Op::RecvActivation, Op::SendGradient, Op::RecvGradient})
      EXPECT_EQ(counts[op], transfers) << to_string(op);
    EXPECT_EQ(counts[Op::AllReduceGradients], s.num_ranks);
    EXPECT_EQ(counts[Op::OptimizerStep], s.num_ranks);
    for (const auto& program : s.ranks) {
      ASSERT_GE(program.size(), 2u);
      EXPECT_EQ(program[program.size() - 2].op, Op::AllReduceGradients);
      EXPECT_EQ(program.back().op, Op::OptimizerStep);
      EXPECT_EQ(std::count_if(program.begin(), program.end(),
                              [](const auto& in) { return in.op == Op::Forward; }),
                shape.virtual_stages * shape.micro_batches);
    }
  }
}

// The small 1F1B schedule printed in docs/pipeline.md, instruction by instruction.
TEST(PipelineScheduleGenerators, OneFOneBTwoRanksThreeMicroBatches) {
  const auto s = make_1f1b_schedule(2, 3);
  auto join = [](const std::vector<PipelineInstruction>& program) {
    std::string out;
    for (const auto& in : program) out += to_string(in) + "; ";
    return out;
  };
  EXPECT_EQ(join(s.ranks[0]),
            "F(stage 0, mb 0); send-act(stage 0 -> rank 1, mb 0); "
            "F(stage 0, mb 1); send-act(stage 0 -> rank 1, mb 1); "
            "recv-grad(stage 1 <- rank 1, mb 0); BW(stage 0, mb 0); "
            "F(stage 0, mb 2); send-act(stage 0 -> rank 1, mb 2); "
            "recv-grad(stage 1 <- rank 1, mb 1); BW(stage 0, mb 1); "
            "recv-grad(stage 1 <- rank 1, mb 2); BW(stage 0, mb 2); "
            "all-reduce-grads; optimizer-step; ");
  EXPECT_EQ(join(s.ranks[1]),
            "recv-act(stage 0 <- rank 0, mb 0); F(stage 1, mb 0); BW(stage 1, mb 0); "
            "send-grad(stage 1 -> rank 0, mb 0); "
            "recv-act(stage 0 <- rank 0, mb 1); F(stage 1, mb 1); BW(stage 1, mb 1); "
            "send-grad(stage 1 -> rank 0, mb 1); "
            "recv-act(stage 0 <- rank 0, mb 2); F(stage 1, mb 2); BW(stage 1, mb 2); "
            "send-grad(stage 1 -> rank 0, mb 2); "
            "all-reduce-grads; optimizer-step; ");
}

TEST(PipelineScheduleGenerators, InterleavedPlacesStagesRoundRobin) {
  const auto s = make_interleaved_1f1b_schedule(2, 4, 2);
  EXPECT_EQ(s.num_stages, 4);
  for (int r = 0; r < 2; ++r)
    for (const auto& in : s.ranks[r]) {
      if (in.op != Op::Forward) continue;
      EXPECT_TRUE(in.stage == r || in.stage == r + 2) << in.stage;
    }
}

TEST(PipelineScheduleGenerators, RejectBadParameters) {
  EXPECT_THROW(make_gpipe_schedule(0, 4), Error);
  EXPECT_THROW(make_1f1b_schedule(2, 0), Error);
  EXPECT_THROW(make_zb_h1_schedule(-1, 4), Error);
  EXPECT_THROW(make_interleaved_1f1b_schedule(2, 4, 0), Error);
  EXPECT_THROW(make_pipeline_schedule("1f1b", 2, 4, 2), Error);
  try {
    make_interleaved_1f1b_schedule(4, 6, 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "pipeline schedule 'interleaved': micro_batches (6) must be a multiple of "
                 "ranks (4)");
  }
  try {
    make_pipeline_schedule("pipedream", 2, 4);
    FAIL() << "no error";
  } catch (const Error& e) {
    // Schedules the tests register (test_schedule_registry.cpp) follow the built-ins.
    EXPECT_EQ(std::string(e.what()).rfind("pipeline schedule name: got 'pipedream', expected "
                                          "one of gpipe, 1f1b, interleaved, zb-h1",
                                          0),
              0u)
        << e.what();
  }
}

// F = 1, a fused backward = 2: the bubble of GPipe and 1F1B is (K-1)/(M+K-1) on every rank.
TEST(PipelineScheduleSimulation, GpipeAndOneFOneBBubble) {
  const PipelineCosts costs{1.0, 1.0, 1.0, 0.0};
  for (int k : {1, 2, 4})
    for (int m : {1, 3, 8}) {
      const double expected = double(k - 1) / (m + k - 1);
      for (const auto& s : {make_gpipe_schedule(k, m), make_1f1b_schedule(k, m)}) {
        SCOPED_TRACE(s.name + " K=" + std::to_string(k) + " M=" + std::to_string(m));
        const auto sim = simulate_schedule(s, costs);
        EXPECT_NEAR(sim.makespan, 3.0 * (m + k - 1), 1e-9);
        for (int r = 0; r < k; ++r) {
          EXPECT_NEAR(sim.busy[r], 3.0 * m, 1e-9);
          EXPECT_NEAR(sim.idle_fraction[r], expected, 1e-9);
        }
      }
    }
}

TEST(PipelineScheduleSimulation, InFlightMicroBatches) {
  for (int k : {1, 2, 4})
    for (int m : {1, 3, 8}) {
      SCOPED_TRACE("K=" + std::to_string(k) + " M=" + std::to_string(m));
      EXPECT_EQ(simulate_schedule(make_gpipe_schedule(k, m)).peak_in_flight[0], m);
      const auto one = simulate_schedule(make_1f1b_schedule(k, m));
      const auto zb = simulate_schedule(make_zb_h1_schedule(k, m));
      EXPECT_EQ(one.peak_in_flight[0], std::min(k, m));
      // ZB-H1 keeps rank 0 at 1F1B's memory.
      EXPECT_EQ(zb.peak_in_flight[0], std::min(k, m));
      for (int r = 0; r < k; ++r) {
        EXPECT_EQ(one.peak_in_flight[r], std::min(k - r, m));
        EXPECT_LE(zb.peak_in_flight[r], std::min(k, m));
      }
    }
}

// With F = B = W = 1 and M >= K, ZB-H1 runs 3M + K - 1: a bubble of (K-1)/(3M+K-1), which
// is below the paper's rough (K-1)/(3M) and a third of 1F1B's idle time.
TEST(PipelineScheduleSimulation, ZeroBubbleH1Bubble) {
  const PipelineCosts costs{1.0, 1.0, 1.0, 0.0};
  for (int k : {2, 4})
    for (int m : {k, 8, 16}) {
      SCOPED_TRACE("K=" + std::to_string(k) + " M=" + std::to_string(m));
      const auto zb = simulate_schedule(make_zb_h1_schedule(k, m), costs);
      const auto one = simulate_schedule(make_1f1b_schedule(k, m), costs);
      EXPECT_NEAR(zb.makespan, 3.0 * m + k - 1, 1e-9);
      for (int r = 0; r < k; ++r) {
        EXPECT_NEAR(zb.idle_fraction[r], double(k - 1) / (3 * m + k - 1), 1e-9);
        EXPECT_LE(zb.idle_fraction[r], double(k - 1) / (3 * m) + 1e-9);
        EXPECT_LT(zb.idle_fraction[r], one.idle_fraction[r]);
      }
      EXPECT_NEAR(one.makespan - 3.0 * m, 3.0 * (zb.makespan - 3.0 * m), 1e-9);
    }
  // Fewer micro-batches than ranks: still well below 1F1B.
  const auto zb = simulate_schedule(make_zb_h1_schedule(4, 3), costs);
  EXPECT_LT(zb.idle_fraction[0],
            simulate_schedule(make_1f1b_schedule(4, 3), costs).idle_fraction[0]);
}

TEST(PipelineScheduleSimulation, InterleavedBubbleBelowOneFOneB) {
  const PipelineCosts costs{1.0, 1.0, 1.0, 0.0};
  for (int k : {2, 4})
    for (int m : {k, 2 * k, 8}) {
      SCOPED_TRACE("K=" + std::to_string(k) + " M=" + std::to_string(m));
      const auto inter = simulate_schedule(make_interleaved_1f1b_schedule(k, m, 2), costs);
      const auto one = simulate_schedule(make_1f1b_schedule(k, m), costs);
      for (int r = 0; r < k; ++r) EXPECT_LT(inter.idle_fraction[r], one.idle_fraction[r]);
    }
}

// Megatron-LM's figure: v chunks per rank cut the bubble to (K-1)/(vM+K-1).
TEST(PipelineScheduleSimulation, InterleavedBubble) {
  const PipelineCosts costs{1.0, 1.0, 1.0, 0.0};
  for (int v : {2, 3})
    for (int k : {2, 4})
      for (int m : {k, 2 * k, 8}) {
        SCOPED_TRACE("v=" + std::to_string(v) + " K=" + std::to_string(k) +
                     " M=" + std::to_string(m));
        const auto sim = simulate_schedule(make_interleaved_1f1b_schedule(k, m, v), costs);
        for (int r = 0; r < k; ++r)
          EXPECT_NEAR(sim.idle_fraction[r], double(k - 1) / (v * m + k - 1), 1e-9);
      }
}

TEST(PipelineScheduleSimulation, SendCostDelaysTheReceiver) {
  // K = 2, M = 1: F0, hop, F1, B1 (2), hop, B0 (2).
  const auto sim = simulate_schedule(make_1f1b_schedule(2, 1), {1.0, 1.0, 1.0, 0.5});
  EXPECT_NEAR(sim.makespan, 1 + 0.5 + 1 + 2 + 0.5 + 2, 1e-9);
}

// --- hand-made schedules -------------------------------------------------------------

PipelineInstruction F(int stage, int mb) { return {Op::Forward, stage, mb, -1}; }
PipelineInstruction BW(int stage, int mb) { return {Op::Backward, stage, mb, -1}; }
PipelineInstruction send_act(int stage, int to, int mb) {
  return {Op::SendActivation, stage, mb, to};
}
PipelineInstruction recv_act(int stage, int from, int mb) {
  return {Op::RecvActivation, stage, mb, from};
}
PipelineInstruction send_grad(int stage, int to, int mb) {
  return {Op::SendGradient, stage, mb, to};
}
PipelineInstruction recv_grad(int stage, int from, int mb) {
  return {Op::RecvGradient, stage, mb, from};
}
const PipelineInstruction kAllReduce{Op::AllReduceGradients, -1, -1, -1};
const PipelineInstruction kStep{Op::OptimizerStep, -1, -1, -1};

// Two ranks, one micro-batch, the correct program; each test breaks one thing.
PipelineSchedule custom() {
  PipelineSchedule s;
  s.name = "custom";
  s.num_ranks = 2;
  s.num_stages = 2;
  s.num_micro_batches = 1;
  s.ranks = {{F(0, 0), send_act(0, 1, 0), recv_grad(1, 1, 0), BW(0, 0), kAllReduce, kStep},
             {recv_act(0, 0, 0), F(1, 0), BW(1, 0), send_grad(1, 0, 0), kAllReduce, kStep}};
  return s;
}

std::string error_of(const PipelineSchedule& s) {
  try {
    verify_schedule(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(PipelineScheduleVerifier, AcceptsAHandMadeSchedule) {
  EXPECT_NO_THROW(verify_schedule(custom()));
  EXPECT_EQ(custom().ranks, make_1f1b_schedule(2, 1).ranks);
}

TEST(PipelineScheduleVerifier, Deadlock) {
  auto s = custom();
  s.ranks[0] = {recv_grad(1, 1, 0), F(0, 0), send_act(0, 1, 0), BW(0, 0), kAllReduce, kStep};
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': deadlock: rank 0 waits at instruction 0 "
            "recv-grad(stage 1 <- rank 1, mb 0); rank 1 waits at instruction 0 "
            "recv-act(stage 0 <- rank 0, mb 0)");
}

TEST(PipelineScheduleVerifier, MissingReceive) {
  auto s = custom();
  s.ranks[1].erase(s.ranks[1].begin());  // no recv-act
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 1 instruction 0 F(stage 1, mb 0): activation of "
            "stage 0, micro-batch 0 was never received (rank 0 instruction 1 "
            "send-act(stage 0 -> rank 1, mb 0) is never received before it)");
}

TEST(PipelineScheduleVerifier, ForwardBeforeItsActivationArrives) {
  auto s = custom();
  std::swap(s.ranks[1][0], s.ranks[1][1]);  // F, then recv-act
  EXPECT_EQ(error_of(s).rfind(
                "pipeline schedule 'custom': rank 1 instruction 0 F(stage 1, mb 0): activation "
                "of stage 0, micro-batch 0 was never received",
                0),
            0u)
      << error_of(s);
}

TEST(PipelineScheduleVerifier, BackwardBeforeForward) {
  auto s = custom();
  std::swap(s.ranks[1][1], s.ranks[1][2]);  // BW, then F
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 1 instruction 1 BW(stage 1, mb 0): backward "
            "before the forward of stage 1, micro-batch 0");
}

TEST(PipelineScheduleVerifier, DuplicatedForward) {
  auto s = custom();
  s.ranks[0].insert(s.ranks[0].begin() + 1, F(0, 0));
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 0 instruction 1 F(stage 0, mb 0): stage 0, "
            "micro-batch 0 is forwarded twice (first at instruction 0)");
}

TEST(PipelineScheduleVerifier, WrongPeer) {
  auto s = custom();
  s.ranks[0][1].peer = 0;
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 0 instruction 1 send-act(stage 0 -> rank 0, mb 0): "
            "peer: got rank 0, expected rank 1 (the rank of stage 1)");
}

TEST(PipelineScheduleVerifier, StageOnTheWrongRank) {
  auto s = custom();
  s.ranks[0][0].stage = 1;
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 0 instruction 0 F(stage 1, mb 0): stage 1 runs on "
            "rank 1, not on rank 0");
}

TEST(PipelineScheduleVerifier, StepBeforeEveryBackward) {
  auto s = custom();
  s.ranks[0] = {F(0, 0), send_act(0, 1, 0), kAllReduce, recv_grad(1, 1, 0), BW(0, 0), kStep};
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 0 instruction 2 all-reduce-grads: stage 0, "
            "micro-batch 0 has no finished backward yet");
}

TEST(PipelineScheduleVerifier, MissingOptimizerStep) {
  auto s = custom();
  s.ranks[1].pop_back();
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'custom': rank 1: optimizer steps: got 0, expected 1 (after "
            "every backward of the rank)");
}

TEST(PipelineScheduleVerifier, WeightPassBeforeInputPass) {
  auto s = make_zb_h1_schedule(1, 1);  // F, B, W, all-reduce, step
  ASSERT_EQ(s.ranks[0][1].op, Op::BackwardInput);
  std::swap(s.ranks[0][1], s.ranks[0][2]);
  EXPECT_EQ(error_of(s),
            "pipeline schedule 'zb-h1': rank 0 instruction 1 W(stage 0, mb 0): W before the B "
            "of stage 0, micro-batch 0");
}

TEST(PipelineScheduleVerifier, RejectsABadHeader) {
  auto s = custom();
  s.ranks.pop_back();
  EXPECT_EQ(error_of(s), "pipeline schedule 'custom': number of rank programs: got 1, expected 2");
}

TEST(PipelineScheduleFormat, OneRowPerStep) {
  const std::string table = format_schedule(make_1f1b_schedule(2, 1));
  EXPECT_NE(table.find("rank 0"), std::string::npos);
  EXPECT_NE(table.find("send-act(stage 0 -> rank 1, mb 0)"), std::string::npos);
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 1 + 6);  // header + 6 steps
}

}  // namespace
}  // namespace strata::parallel::testing
