// The instruction vocabulary and what every generator shares: a generator (one file each
// under schedules/) only decides the order of compute passes on each rank;
// assemble_schedule adds the transfers next to them and the all-reduce and optimizer step
// at the end, so the placement rule lives in one place.
#include "strata/parallel/pipeline/schedule.h"

#include <algorithm>
#include <sstream>

#include "strata/core/error.h"
#include "strata/core/memory.h"

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

int64_t estimate_schedule_bytes(int64_t ranks, int64_t micro_batches, int64_t virtual_stages) {
  constexpr int64_t kInstructionsPerPass = 7;
  // The instruction (16 bytes), its interval (16) and the simulator's and verifier's maps.
  constexpr int64_t kBytesPerInstruction = 128;
  return core::saturating_product(
      {ranks, virtual_stages, micro_batches, kInstructionsPerPass, kBytesPerInstruction});
}

void check_schedule_shape(const std::string& name, int ranks, int micro_batches,
                          int virtual_stages) {
  STRATA_CHECK(ranks >= 1, "pipeline schedule '", name, "': ranks must be >= 1, got ", ranks);
  STRATA_CHECK(micro_batches >= 1, "pipeline schedule '", name,
               "': micro_batches must be >= 1, got ", micro_batches);
  STRATA_CHECK(virtual_stages >= 1, "pipeline schedule '", name,
               "': virtual_stages must be >= 1, got ", virtual_stages);
}

PipelineSchedule assemble_schedule(
    std::string name, int ranks, int micro_batches, int virtual_stages,
    const std::vector<std::vector<PipelineInstruction>>& compute_order) {
  check_schedule_shape(name, ranks, micro_batches, virtual_stages);
  STRATA_CHECK(static_cast<int>(compute_order.size()) == ranks, "pipeline schedule '", name,
               "': compute order for ", compute_order.size(), " ranks, expected ", ranks);
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
      STRATA_CHECK(in.op == PipelineOp::Forward || backward || in.op == PipelineOp::BackwardWeight,
                   "pipeline schedule '", s.name, "': rank ", r, "'s compute order holds ",
                   to_string(in), ", expected only F, BW, B and W passes");
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

}  // namespace strata::parallel
