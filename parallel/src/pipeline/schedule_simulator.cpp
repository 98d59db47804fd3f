// simulate_schedule: an event-driven play of a verified schedule against a cost model or
// per-instruction durations.
// An instruction's start depends only on the previous instruction of its rank and, for a
// receive, on its matching send, so playing ranks round-robin until each blocks gives the
// same times as a global event queue, with less machinery.
#include <algorithm>
#include <map>
#include <tuple>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

PipelineSimulation simulate_schedule(const PipelineSchedule& schedule, const PipelineCosts& costs) {
  STRATA_CHECK(costs.forward >= 0 && costs.backward_input >= 0 && costs.backward_weight >= 0 &&
                   costs.send >= 0,
               "pipeline costs must be >= 0, got forward ", costs.forward, ", backward_input ",
               costs.backward_input, ", backward_weight ", costs.backward_weight, ", send ",
               costs.send);
  PipelineDurations durations(schedule.ranks.size());
  for (size_t r = 0; r < schedule.ranks.size(); ++r)
    for (const PipelineInstruction& in : schedule.ranks[r]) {
      double cost = 0;
      switch (in.op) {
        case PipelineOp::Forward: cost = costs.forward; break;
        case PipelineOp::Backward: cost = costs.backward_input + costs.backward_weight; break;
        case PipelineOp::BackwardInput: cost = costs.backward_input; break;
        case PipelineOp::BackwardWeight: cost = costs.backward_weight; break;
        case PipelineOp::SendActivation:
        case PipelineOp::SendGradient: cost = costs.send; break;
        default: break;  // receives, the all-reduce and the step: not modelled
      }
      durations[r].push_back(cost);
    }
  return simulate_schedule(schedule, durations);
}

PipelineSimulation simulate_schedule(const PipelineSchedule& schedule,
                                     const PipelineDurations& durations) {
  verify_schedule(schedule);  // so that the play below cannot hang or miss a send
  const int n = schedule.num_ranks;
  STRATA_CHECK(durations.size() == schedule.ranks.size(), "pipeline durations: ", durations.size(),
               " ranks, expected the schedule's ", schedule.ranks.size());
  for (int r = 0; r < n; ++r) {
    STRATA_CHECK(durations[r].size() == schedule.ranks[r].size(), "pipeline durations of rank ", r,
                 ": ", durations[r].size(), " instructions, expected the schedule's ",
                 schedule.ranks[r].size());
    for (size_t i = 0; i < durations[r].size(); ++i)
      STRATA_CHECK(durations[r][i] >= 0, "pipeline duration of rank ", r, " instruction ", i, " (",
                   to_string(schedule.ranks[r][i]), "): ", durations[r][i], ", expected >= 0");
  }
  std::vector<double> now(n, 0.0);
  std::vector<size_t> pc(n, 0);
  std::vector<int> in_flight(n, 0);
  std::vector<int> stage_in_flight(schedule.num_stages, 0);
  PipelineSimulation sim;
  sim.busy.assign(n, 0.0);
  sim.peak_in_flight.assign(n, 0);
  sim.stage_peak_in_flight.assign(schedule.num_stages, 0);
  sim.intervals.resize(n);
  // (is gradient, stage, micro-batch) -> when the data is at the receiver.
  std::map<std::tuple<bool, int, int>, double> arrival;

  auto run = [&](int r, size_t i) {
    const PipelineInstruction& in = schedule.ranks[r][i];
    const bool grad = in.op == PipelineOp::SendGradient || in.op == PipelineOp::RecvGradient;
    const std::tuple<bool, int, int> message{grad, in.stage, in.micro_batch};
    double cost = durations[r][i];
    bool busy = true;
    switch (in.op) {
      case PipelineOp::Forward:
        sim.peak_in_flight[r] = std::max(sim.peak_in_flight[r], ++in_flight[r]);
        sim.stage_peak_in_flight[in.stage] =
            std::max(sim.stage_peak_in_flight[in.stage], ++stage_in_flight[in.stage]);
        break;
      case PipelineOp::Backward:
      case PipelineOp::BackwardWeight:
        --in_flight[r];
        --stage_in_flight[in.stage];
        break;
      case PipelineOp::BackwardInput: break;
      case PipelineOp::SendActivation:
      case PipelineOp::SendGradient:
        arrival[message] = now[r] + cost;
        if (cost > 0) sim.transfers.push_back({r, in.peer, i, now[r], now[r] + cost});
        cost = 0;  // on the link, not on the rank
        busy = false;
        break;
      case PipelineOp::RecvActivation:
      case PipelineOp::RecvGradient: {
        auto it = arrival.find(message);
        if (it == arrival.end()) return false;
        now[r] = std::max(now[r], it->second);
        busy = false;
        break;
      }
      case PipelineOp::AllReduceGradients:
      case PipelineOp::OptimizerStep: busy = false; break;
    }
    sim.intervals[r].emplace_back(now[r], now[r] + cost);
    now[r] += cost;
    if (busy) sim.busy[r] += cost;
    return true;
  };

  for (bool moved = true; moved;) {
    moved = false;
    for (int r = 0; r < n; ++r)
      while (pc[r] < schedule.ranks[r].size() && run(r, pc[r])) {
        ++pc[r];
        moved = true;
      }
  }
  sim.makespan = *std::max_element(now.begin(), now.end());
  for (int r = 0; r < n; ++r)
    sim.idle_fraction.push_back(sim.makespan > 0 ? 1.0 - sim.busy[r] / sim.makespan : 0.0);
  return sim;
}

}  // namespace strata::parallel
