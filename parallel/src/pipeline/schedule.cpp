// The instruction vocabulary and the schedule generators. Every generator only decides the
// order of compute passes on each rank; assemble() adds the transfers next to them and the
// all-reduce and optimizer step at the end, so the placement rule lives in one place.
#include "strata/parallel/pipeline/schedule.h"

#include <algorithm>
#include <deque>
#include <sstream>

#include "strata/core/error.h"

namespace strata::parallel {

std::string to_string(PipelineOp op) {
  switch (op) {
    case PipelineOp::Forward: return "F";
    case PipelineOp::Backward: return "BW";
    case PipelineOp::BackwardInput: return "B";
    case PipelineOp::BackwardWeight: return "W";
    case PipelineOp::SendActivation: return "send-act";
    case PipelineOp::RecvActivation: return "recv-act";
    case PipelineOp::SendGradient: return "send-grad";
    case PipelineOp::RecvGradient: return "recv-grad";
    case PipelineOp::AllReduceGradients: return "all-reduce-grads";
    case PipelineOp::OptimizerStep: return "optimizer-step";
  }
  return "unknown-op";
}

bool PipelineInstruction::operator==(const PipelineInstruction& other) const {
  return op == other.op && stage == other.stage && micro_batch == other.micro_batch &&
         peer == other.peer;
}

std::string to_string(const PipelineInstruction& in) {
  std::ostringstream out;
  out << to_string(in.op);
  switch (in.op) {
    case PipelineOp::SendActivation:
    case PipelineOp::SendGradient:
      out << "(stage " << in.stage << " -> rank " << in.peer << ", mb " << in.micro_batch << ")";
      break;
    case PipelineOp::RecvActivation:
    case PipelineOp::RecvGradient:
      out << "(stage " << in.stage << " <- rank " << in.peer << ", mb " << in.micro_batch << ")";
      break;
    case PipelineOp::AllReduceGradients:
    case PipelineOp::OptimizerStep: break;
    default: out << "(stage " << in.stage << ", mb " << in.micro_batch << ")";
  }
  return out.str();
}

std::string format_schedule(const PipelineSchedule& schedule) {
  size_t rows = 0, width = 4;
  for (const auto& program : schedule.ranks) {
    rows = std::max(rows, program.size());
    for (const auto& in : program) width = std::max(width, to_string(in).size());
  }
  std::ostringstream out;
  auto cell = [&](const std::string& text) {
    out << " | " << text << std::string(width - text.size(), ' ');
  };
  out << "step";
  for (size_t r = 0; r < schedule.ranks.size(); ++r) cell("rank " + std::to_string(r));
  out << " |\n";
  for (size_t i = 0; i < rows; ++i) {
    std::string step = std::to_string(i);
    out << step << std::string(4 - std::min<size_t>(4, step.size()), ' ');
    for (const auto& program : schedule.ranks)
      cell(i < program.size() ? to_string(program[i]) : "");
    out << " |\n";
  }
  return out.str();
}

namespace {

void check_shape(const std::string& name, int ranks, int micro_batches, int virtual_stages) {
  STRATA_CHECK(ranks >= 1, "pipeline schedule '", name, "': ranks must be >= 1, got ", ranks);
  STRATA_CHECK(micro_batches >= 1, "pipeline schedule '", name,
               "': micro_batches must be >= 1, got ", micro_batches);
  STRATA_CHECK(virtual_stages >= 1, "pipeline schedule '", name,
               "': virtual_stages must be >= 1, got ", virtual_stages);
}

PipelineInstruction compute(PipelineOp op, int stage, int micro_batch) {
  return {op, stage, micro_batch, -1};
}

// Turns each rank's compute order into its full program: a receive right before the pass
// that consumes it, a send right after the pass that produces it (the executor posts both
// non-blocking), then the gradient all-reduce and the optimizer step.
PipelineSchedule assemble(std::string name, int ranks, int micro_batches, int virtual_stages,
                          const std::vector<std::vector<PipelineInstruction>>& compute_order) {
  PipelineSchedule s;
  s.name = std::move(name);
  s.num_ranks = ranks;
  s.num_stages = ranks * virtual_stages;
  s.num_micro_batches = micro_batches;
  s.ranks.resize(ranks);
  const int last = s.num_stages - 1;
  for (int r = 0; r < ranks; ++r) {
    auto& program = s.ranks[r];
    auto remote = [&](int stage) { return s.rank_of_stage(stage) != r; };
    for (const auto& in : compute_order[r]) {
      const int st = in.stage, mb = in.micro_batch;
      const bool backward = in.op == PipelineOp::Backward || in.op == PipelineOp::BackwardInput;
      if (in.op == PipelineOp::Forward && st > 0 && remote(st - 1))
        program.push_back({PipelineOp::RecvActivation, st - 1, mb, s.rank_of_stage(st - 1)});
      if (backward && st < last && remote(st + 1))
        program.push_back({PipelineOp::RecvGradient, st + 1, mb, s.rank_of_stage(st + 1)});
      program.push_back(in);
      if (in.op == PipelineOp::Forward && st < last && remote(st + 1))
        program.push_back({PipelineOp::SendActivation, st, mb, s.rank_of_stage(st + 1)});
      if (backward && st > 0 && remote(st - 1))
        program.push_back({PipelineOp::SendGradient, st, mb, s.rank_of_stage(st - 1)});
    }
    program.push_back({PipelineOp::AllReduceGradients, -1, -1, -1});
    program.push_back({PipelineOp::OptimizerStep, -1, -1, -1});
  }
  return s;
}

}  // namespace

PipelineSchedule make_gpipe_schedule(int ranks, int micro_batches) {
  check_shape("gpipe", ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    for (int m = 0; m < micro_batches; ++m) order[r].push_back(compute(PipelineOp::Forward, r, m));
    for (int m = 0; m < micro_batches; ++m) order[r].push_back(compute(PipelineOp::Backward, r, m));
  }
  return assemble("gpipe", ranks, micro_batches, 1, order);
}

PipelineSchedule make_1f1b_schedule(int ranks, int micro_batches) {
  check_shape("1f1b", ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    const int warmup = std::min(ranks - r - 1, micro_batches);
    int f = 0, b = 0;
    while (f < warmup) order[r].push_back(compute(PipelineOp::Forward, r, f++));
    while (f < micro_batches) {
      order[r].push_back(compute(PipelineOp::Forward, r, f++));
      order[r].push_back(compute(PipelineOp::Backward, r, b++));
    }
    while (b < micro_batches) order[r].push_back(compute(PipelineOp::Backward, r, b++));
  }
  return assemble("1f1b", ranks, micro_batches, 1, order);
}

PipelineSchedule make_interleaved_1f1b_schedule(int ranks, int micro_batches, int virtual_stages) {
  check_shape("interleaved", ranks, micro_batches, virtual_stages);
  // Megatron-LM walks micro-batches in groups of `ranks` through each chunk in turn;
  // groups only line up when every group is full.
  STRATA_CHECK(micro_batches % ranks == 0, "pipeline schedule 'interleaved': micro_batches (",
               micro_batches, ") must be a multiple of ranks (", ranks, ")");
  const int total = micro_batches * virtual_stages;  // (chunk, micro-batch) units per rank
  const int group = ranks * virtual_stages;
  auto micro_batch = [&](int k) { return (k / group) * ranks + k % ranks; };
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    auto forward = [&](int k) {
      const int chunk = (k / ranks) % virtual_stages;
      return compute(PipelineOp::Forward, chunk * ranks + r, micro_batch(k));
    };
    auto backward = [&](int k) {
      const int chunk = virtual_stages - 1 - (k / ranks) % virtual_stages;
      return compute(PipelineOp::Backward, chunk * ranks + r, micro_batch(k));
    };
    // Same warm-up as Megatron-LM: enough forwards that the first backward's gradient can
    // arrive without a stall; all of them when there is only one group.
    const int warmup = micro_batches == ranks
                           ? total
                           : std::min(total, (ranks - r - 1) * 2 + (virtual_stages - 1) * ranks);
    int f = 0, b = 0;
    while (f < warmup) order[r].push_back(forward(f++));
    while (f < total) {
      order[r].push_back(forward(f++));
      order[r].push_back(backward(b++));
    }
    while (b < total) order[r].push_back(backward(b++));
  }
  return assemble("interleaved", ranks, micro_batches, virtual_stages, order);
}

PipelineSchedule make_zb_h1_schedule(int ranks, int micro_batches) {
  check_shape("zb-h1", ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    // 1F1B's warm-up; rank r then keeps up to r W passes pending. That gives every rank
    // K micro-batches in flight (rank 0 no more than in 1F1B), lets B passes start
    // earlier, and the pending W passes fill the cool-down where 1F1B waits.
    const int warmup = std::min(ranks - r - 1, micro_batches);
    std::deque<int> pending_w;
    auto& out = order[r];
    auto backward_input = [&](int m) {
      out.push_back(compute(PipelineOp::BackwardInput, r, m));
      pending_w.push_back(m);
      if (static_cast<int>(pending_w.size()) > r) {
        out.push_back(compute(PipelineOp::BackwardWeight, r, pending_w.front()));
        pending_w.pop_front();
      }
    };
    int f = 0, b = 0;
    while (f < warmup) out.push_back(compute(PipelineOp::Forward, r, f++));
    while (f < micro_batches) {
      out.push_back(compute(PipelineOp::Forward, r, f++));
      backward_input(b++);
    }
    while (b < micro_batches) backward_input(b++);
    for (int m : pending_w) out.push_back(compute(PipelineOp::BackwardWeight, r, m));
  }
  return assemble("zb-h1", ranks, micro_batches, 1, order);
}

PipelineSchedule make_pipeline_schedule(const std::string& name, int ranks, int micro_batches,
                                        int virtual_stages) {
  if (name == "interleaved")
    return make_interleaved_1f1b_schedule(ranks, micro_batches, virtual_stages);
  STRATA_CHECK(name == "gpipe" || name == "1f1b" || name == "zb-h1",
               "pipeline schedule name: got '", name,
               "', expected one of gpipe, 1f1b, interleaved, zb-h1");
  STRATA_CHECK(virtual_stages == 1, "pipeline schedule '", name,
               "': virtual_stages must be 1 (only 'interleaved' has virtual stages), got ",
               virtual_stages);
  if (name == "gpipe") return make_gpipe_schedule(ranks, micro_batches);
  if (name == "1f1b") return make_1f1b_schedule(ranks, micro_batches);
  return make_zb_h1_schedule(ranks, micro_batches);
}

}  // namespace strata::parallel
