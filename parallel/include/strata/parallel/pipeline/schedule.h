#pragma once
// Pipeline schedules as data: every rank's program is a plain list of instructions
// (compute, point-to-point transfers, the gradient all-reduce and the optimizer step).
// Generators build the well-known schedules; verify_schedule simulates all ranks' lists
// together before anything runs, so a schedule that would hang or use a tensor that does
// not exist is rejected with the rank and instruction at fault instead of hanging a job.
// simulate_schedule plays a list against a cost model to compare bubbles and memory.
//
// Placement: stage s (a model chunk; with v virtual stages per rank there are ranks * v
// of them) runs on rank s % num_ranks, the interleaved placement of Megatron-LM. With
// v = 1 stage s runs on rank s.

#include <cstdint>
#include <string>
#include <vector>

namespace strata::parallel {

enum class PipelineOp {
  Forward,
  Backward,        // B and W together
  BackwardInput,   // B: the gradient of the stage's input (on the critical path)
  BackwardWeight,  // W: the gradient of the stage's weights (fills bubbles)
  SendActivation,
  RecvActivation,
  SendGradient,
  RecvGradient,
  AllReduceGradients,  // across data-parallel replicas; the executor skips it when dp = 1
  OptimizerStep,
};

std::string to_string(PipelineOp op);

// For transfers, `stage` is the stage that produced the tensor: send-act(stage 1 -> rank
// 2) carries stage 1's output to stage 2's rank; send-grad(stage 2 -> rank 1) carries the
// gradient of stage 2's input back to stage 1's rank. A matching receive names the same
// stage and micro-batch, and the sender as its peer.
struct PipelineInstruction {
  PipelineOp op = PipelineOp::Forward;
  int stage = -1;        // -1 for AllReduceGradients and OptimizerStep
  int micro_batch = -1;  // -1 for AllReduceGradients and OptimizerStep
  int peer = -1;         // the other rank, for transfers only

  bool operator==(const PipelineInstruction& other) const;
  bool operator!=(const PipelineInstruction& other) const { return !(*this == other); }
};

// "F(stage 1, mb 3)", "B(...)", "W(...)", "BW(...)" for a fused Backward,
// "send-act(stage 0 -> rank 1, mb 3)", "recv-grad(stage 1 <- rank 1, mb 0)",
// "all-reduce-grads", "optimizer-step".
std::string to_string(const PipelineInstruction& instruction);

struct PipelineSchedule {
  std::string name;
  int num_ranks = 0;
  int num_stages = 0;  // num_ranks * virtual stages per rank
  int num_micro_batches = 0;
  std::vector<std::vector<PipelineInstruction>> ranks;  // ranks[r]: rank r's program

  int rank_of_stage(int stage) const { return stage % num_ranks; }
};

// One table row per step, one column per rank, for logs and docs.
std::string format_schedule(const PipelineSchedule& schedule);

// The built-in generators. Each lives in its own file under parallel/src/pipeline/schedules/
// and is registered by name in schedule_registry.cpp (see schedule_registry.h).
//
// Fill with every forward, then drain with every backward. Peak M micro-batches in flight.
PipelineSchedule make_gpipe_schedule(int ranks, int micro_batches);
// One forward, one backward: rank r warms up with K - r - 1 forwards, so at most K
// micro-batches are in flight; same bubble as GPipe, (K-1)/(M+K-1).
PipelineSchedule make_1f1b_schedule(int ranks, int micro_batches);
// Megatron-LM's interleaved 1F1B with v model chunks per rank; the bubble shrinks by about
// v at v times the transfers. Needs micro_batches to be a multiple of ranks.
PipelineSchedule make_interleaved_1f1b_schedule(int ranks, int micro_batches, int virtual_stages);
// ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): 1F1B with the backward split
// into B and W; rank r delays its first r W passes so that they fill the cool-down
// bubbles. Rank 0 holds at most K micro-batches, like 1F1B; with F = B = W the bubble is
// (K-1)/(3M+K-1) for M >= K, a third of 1F1B's in time.
PipelineSchedule make_zb_h1_schedule(int ranks, int micro_batches);
// The schedule registered as `name` (schedule_registry.h: the built-ins are "gpipe",
// "1f1b", "interleaved" and "zb-h1"). virtual_stages must be 1 unless the schedule supports
// virtual stages. An unknown name raises strata::Error listing the registered names.
PipelineSchedule make_pipeline_schedule(const std::string& name, int ranks, int micro_batches,
                                        int virtual_stages = 1);

// Building blocks of a generator: a generator decides only the order of compute passes on
// each rank and leaves the transfers and the step to assemble_schedule, so that every
// schedule places them by the same rule.
//
// Throws strata::Error naming schedule `name` when ranks, micro_batches or virtual_stages
// is below 1.
// Bytes that generating, verifying and simulating a schedule of this shape takes, about:
// every (stage, micro-batch) pair gives each rank up to 7 instructions (F, B, W and four
// transfers), each with its simulated interval and bookkeeping. Saturates at INT64_MAX; a
// program refuses a shape beyond the machine with core::check_fits before generating it.
int64_t estimate_schedule_bytes(int64_t ranks, int64_t micro_batches, int64_t virtual_stages);

void check_schedule_shape(const std::string& name, int ranks, int micro_batches,
                          int virtual_stages);
// A compute pass: op is Forward, Backward, BackwardInput or BackwardWeight.
inline PipelineInstruction compute_pass(PipelineOp op, int stage, int micro_batch) {
  return {op, stage, micro_batch, -1};
}
// compute_order[r]: rank r's compute passes in order. Returns the full programs: a receive
// right before the pass that consumes it, a send right after the pass that produces it
// (the executor posts both non-blocking), then the gradient all-reduce and the optimizer
// step. The result is not verified: verify_schedule does that.
PipelineSchedule assemble_schedule(
    std::string name, int ranks, int micro_batches, int virtual_stages,
    const std::vector<std::vector<PipelineInstruction>>& compute_order);

// Throws strata::Error naming the rank, the instruction index and the instruction when
// the schedule would deadlock, sends something nobody receives, computes before its
// input exists, or misses, repeats or misplaces a compute pass. See docs/pipeline.md.
void verify_schedule(const PipelineSchedule& schedule);

// Time of one instruction; a fused Backward costs backward_input + backward_weight.
// `send` is the delay between a send and the matching receive's data being there.
struct PipelineCosts {
  double forward = 1;
  double backward_input = 1;
  double backward_weight = 1;
  double send = 0;
};

struct PipelineSimulation {
  double makespan = 0;
  std::vector<double> busy;           // per rank: time spent computing
  std::vector<double> idle_fraction;  // per rank: 1 - busy / makespan
  // Per rank: the most micro-batches whose forward on this rank is done and whose last
  // backward pass (Backward or W) is not, summed over the rank's stages: its activations.
  std::vector<int> peak_in_flight;
  // Per stage: the same count for that stage alone, what a memory model charges it with.
  // Both depend only on each rank's order of passes, not on the costs.
  std::vector<int> stage_peak_in_flight;
  // Per rank, per instruction: its (start, end) time; a receive starts when its data is there.
  // A send takes no time on its rank (start = end): its data travels on the link.
  std::vector<std::vector<std::pair<double, double>>> intervals;
  // Every send that takes time on its link (duration > 0), in the order played.
  struct Transfer {
    int from = 0, to = 0;    // ranks
    size_t instruction = 0;  // index in ranks[from]
    double start = 0, end = 0;
  };
  std::vector<Transfer> transfers;
};

// Runs every rank's list in order: compute takes its cost, a receive waits for the
// matching send (+ costs.send). The schedule must pass verify_schedule (it is checked).
PipelineSimulation simulate_schedule(const PipelineSchedule& schedule,
                                     const PipelineCosts& costs = {});

// Per rank, per instruction of schedule.ranks[r]: how long it takes (seconds, or any unit).
// A compute pass, the all-reduce and the optimizer step occupy their rank for that long
// (only compute passes count as busy); a send's duration is the time its data takes on
// the link to the peer (the sender goes on at once, the data is there at start +
// duration); a receive waits for its data and then takes its own duration.
using PipelineDurations = std::vector<std::vector<double>>;

// The one replay: simulate_schedule with costs is this with each instruction's cost from
// `costs`. Raises strata::Error for a duration list whose shape is not the schedule's or a
// negative duration.
PipelineSimulation simulate_schedule(const PipelineSchedule& schedule,
                                     const PipelineDurations& durations);

}  // namespace strata::parallel
