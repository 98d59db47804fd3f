// verify_schedule: plays every rank's program together, the way the executor will run it
// (sends are buffered and complete at once, a receive waits for its matching send), and
// stops at the first instruction that could not run. Checks that need no play (ranges,
// placement, peers) run first, so that a wrong peer reads as a wrong peer and not as the
// deadlock it would cause.
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

namespace {

bool is_transfer(PipelineOp op) {
  return op == PipelineOp::SendActivation || op == PipelineOp::RecvActivation ||
         op == PipelineOp::SendGradient || op == PipelineOp::RecvGradient;
}
bool is_global(PipelineOp op) {
  return op == PipelineOp::AllReduceGradients || op == PipelineOp::OptimizerStep;
}
bool is_gradient(PipelineOp op) {
  return op == PipelineOp::SendGradient || op == PipelineOp::RecvGradient;
}

class Verifier {
 public:
  explicit Verifier(const PipelineSchedule& s) : s_(s) {}

  void run() {
    check_header();
    for (int r = 0; r < s_.num_ranks; ++r)
      for (size_t i = 0; i < s_.ranks[r].size(); ++i) check_static(r, i);
    play();
    check_complete();
  }

 private:
  using Unit = std::pair<int, int>;            // (stage, micro-batch)
  using Message = std::tuple<bool, int, int>;  // (is gradient, stage, micro-batch)
  struct Sent {
    int rank;
    size_t index;
    bool received = false;
  };
  struct RankState {
    std::set<Unit> activations, gradients;  // inputs present on this rank
    bool stepped = false;
  };

  std::string prefix() const { return "pipeline schedule '" + s_.name + "': "; }
  std::string where(int r, size_t i) const {
    return prefix() + "rank " + std::to_string(r) + " instruction " + std::to_string(i) + " " +
           to_string(s_.ranks[r][i]) + ": ";
  }

  void check_header() const {
    STRATA_CHECK(s_.num_ranks >= 1, prefix(), "num_ranks must be >= 1, got ", s_.num_ranks);
    STRATA_CHECK(s_.num_micro_batches >= 1, prefix(), "num_micro_batches must be >= 1, got ",
                 s_.num_micro_batches);
    STRATA_CHECK(s_.num_stages >= s_.num_ranks && s_.num_stages % s_.num_ranks == 0, prefix(),
                 "num_stages must be a positive multiple of num_ranks (", s_.num_ranks, "), got ",
                 s_.num_stages);
    STRATA_CHECK(static_cast<int>(s_.ranks.size()) == s_.num_ranks, prefix(),
                 "number of rank programs: got ", s_.ranks.size(), ", expected ", s_.num_ranks);
  }

  // Range, placement and peer of one instruction.
  void check_static(int r, size_t i) const {
    const PipelineInstruction& in = s_.ranks[r][i];
    if (is_global(in.op)) return;
    const int last = s_.num_stages - 1;
    STRATA_CHECK(in.stage >= 0 && in.stage <= last, where(r, i), "stage must be in [0, ", last,
                 "], got ", in.stage);
    STRATA_CHECK(in.micro_batch >= 0 && in.micro_batch < s_.num_micro_batches, where(r, i),
                 "micro-batch must be in [0, ", s_.num_micro_batches - 1, "], got ",
                 in.micro_batch);
    if (!is_transfer(in.op)) {
      STRATA_CHECK(s_.rank_of_stage(in.stage) == r, where(r, i), "stage ", in.stage,
                   " runs on rank ", s_.rank_of_stage(in.stage), ", not on rank ", r);
      return;
    }
    // The stage that produced the tensor, and the one that consumes it.
    const bool grad = is_gradient(in.op);
    const int consumer = grad ? in.stage - 1 : in.stage + 1;
    STRATA_CHECK(consumer >= 0 && consumer <= last, where(r, i), "stage ", in.stage,
                 grad ? " is the first stage and has no gradient to pass back"
                      : " is the last stage and has no activation to pass on");
    const bool send = in.op == PipelineOp::SendActivation || in.op == PipelineOp::SendGradient;
    const int from = s_.rank_of_stage(in.stage), to = s_.rank_of_stage(consumer);
    STRATA_CHECK(from != to, where(r, i), "stages ", in.stage, " and ", consumer,
                 " both run on rank ", from, "; nothing to transfer");
    STRATA_CHECK((send ? from : to) == r, where(r, i), "runs on rank ", r, ", expected rank ",
                 send ? from : to, " (the rank of stage ", send ? in.stage : consumer, ")");
    STRATA_CHECK(in.peer == (send ? to : from), where(r, i), "peer: got rank ", in.peer,
                 ", expected rank ", send ? to : from, " (the rank of stage ",
                 send ? consumer : in.stage, ")");
  }

  // Runs each rank until it blocks on a receive or ends; stops when no rank can move.
  void play() {
    state_.assign(s_.num_ranks, RankState{});
    pc_.assign(s_.num_ranks, 0);
    for (bool moved = true; moved;) {
      moved = false;
      for (int r = 0; r < s_.num_ranks; ++r)
        while (pc_[r] < s_.ranks[r].size() && step(r, pc_[r])) {
          ++pc_[r];
          moved = true;
        }
    }
    std::ostringstream blocked;
    for (int r = 0; r < s_.num_ranks; ++r) {
      if (pc_[r] == s_.ranks[r].size()) continue;
      blocked << (blocked.tellp() > 0 ? "; " : "") << "rank " << r << " waits at instruction "
              << pc_[r] << " " << to_string(s_.ranks[r][pc_[r]]);
    }
    STRATA_CHECK(blocked.tellp() == 0, prefix(), "deadlock: ", blocked.str());
  }

  // Executes one instruction; false when it is a receive whose send has not run yet.
  bool step(int r, size_t i) {
    const PipelineInstruction& in = s_.ranks[r][i];
    RankState& rank = state_[r];
    const Unit unit{in.stage, in.micro_batch};
    const int last = s_.num_stages - 1;
    STRATA_CHECK(!rank.stepped, where(r, i), "comes after the optimizer step");
    switch (in.op) {
      case PipelineOp::Forward:
        require_once(forward_, unit, r, i, "forwarded");
        if (in.stage > 0) require_input(rank.activations, "activation", in.stage - 1, r, i);
        rank.activations.insert(unit);  // for a next stage on this rank
        return true;
      case PipelineOp::Backward:
      case PipelineOp::BackwardInput:
        STRATA_CHECK(forward_.count(unit), where(r, i), "backward before the forward of stage ",
                     in.stage, ", micro-batch ", in.micro_batch);
        require_once(backward_input_, unit, r, i, "backward (B)");
        if (in.stage < last) require_input(rank.gradients, "gradient", in.stage + 1, r, i);
        rank.gradients.insert(unit);
        if (in.op == PipelineOp::Backward) require_once(backward_weight_, unit, r, i, "W");
        return true;
      case PipelineOp::BackwardWeight:
        STRATA_CHECK(backward_input_.count(unit), where(r, i), "W before the B of stage ", in.stage,
                     ", micro-batch ", in.micro_batch);
        require_once(backward_weight_, unit, r, i, "backward (W)");
        return true;
      case PipelineOp::SendActivation:
      case PipelineOp::SendGradient: {
        const bool grad = is_gradient(in.op);
        STRATA_CHECK((grad ? backward_input_ : forward_).count(unit), where(r, i), "sends the ",
                     grad ? "gradient" : "activation", " of stage ", in.stage, ", micro-batch ",
                     in.micro_batch, " before its ", grad ? "backward" : "forward");
        const auto [it, fresh] = sent_.emplace(Message{grad, in.stage, in.micro_batch}, Sent{r, i});
        STRATA_CHECK(fresh, where(r, i), "already sent at instruction ", it->second.index);
        return true;
      }
      case PipelineOp::RecvActivation:
      case PipelineOp::RecvGradient: {
        const bool grad = is_gradient(in.op);
        auto it = sent_.find(Message{grad, in.stage, in.micro_batch});
        if (it == sent_.end()) return false;
        STRATA_CHECK(!it->second.received, where(r, i), "received twice");
        it->second.received = true;
        (grad ? rank.gradients : rank.activations).insert(unit);
        return true;
      }
      case PipelineOp::AllReduceGradients:
      case PipelineOp::OptimizerStep:
        require_all_backward(r, i);
        rank.stepped = in.op == PipelineOp::OptimizerStep;
        return true;
    }
    return true;
  }

  void require_once(std::map<Unit, size_t>& done, const Unit& unit, int r, size_t i,
                    const char* what) {
    const auto [it, fresh] = done.emplace(unit, i);
    STRATA_CHECK(fresh, where(r, i), "stage ", unit.first, ", micro-batch ", unit.second, " is ",
                 what, " twice (first at instruction ", it->second, ")");
  }

  void require_input(const std::set<Unit>& present, const char* what, int stage, int r,
                     size_t i) const {
    const int mb = s_.ranks[r][i].micro_batch;
    if (present.count({stage, mb})) return;
    if (s_.rank_of_stage(stage) == r)
      STRATA_FAIL(where(r, i), what, " of stage ", stage, ", micro-batch ", mb,
                  " is not computed yet");
    // Name the send this rank forgot to receive, when there is one.
    std::string hint;
    auto it = sent_.find(Message{std::string(what) == "gradient", stage, mb});
    if (it != sent_.end() && !it->second.received)
      hint = " (rank " + std::to_string(it->second.rank) + " instruction " +
             std::to_string(it->second.index) + " " +
             to_string(s_.ranks[it->second.rank][it->second.index]) +
             " is never received before it)";
    STRATA_FAIL(where(r, i), what, " of stage ", stage, ", micro-batch ", mb, " was never received",
                hint);
  }

  void require_all_backward(int r, size_t i) const {
    for (int st = r; st < s_.num_stages; st += s_.num_ranks)
      for (int mb = 0; mb < s_.num_micro_batches; ++mb)
        STRATA_CHECK(backward_weight_.count({st, mb}), where(r, i), "stage ", st, ", micro-batch ",
                     mb, " has no finished backward yet");
  }

  void check_complete() const {
    for (const auto& [message, sent] : sent_)
      STRATA_CHECK(sent.received, where(sent.rank, sent.index), "is never received");
    // The step requires every backward of its rank, and a backward its forward, so one
    // step per rank means every (stage, micro-batch) was computed.
    for (int r = 0; r < s_.num_ranks; ++r) {
      int steps = 0;
      for (const auto& in : s_.ranks[r]) steps += in.op == PipelineOp::OptimizerStep;
      STRATA_CHECK(steps == 1, prefix(), "rank ", r, ": optimizer steps: got ", steps,
                   ", expected 1 (after every backward of the rank)");
    }
  }

  const PipelineSchedule& s_;
  std::vector<RankState> state_;
  std::vector<size_t> pc_;
  std::map<Unit, size_t> forward_, backward_input_, backward_weight_;
  std::map<Message, Sent> sent_;
};

}  // namespace

void verify_schedule(const PipelineSchedule& schedule) { Verifier(schedule).run(); }

}  // namespace strata::parallel
