// ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): 1F1B with the backward split
// into B (input gradient, on the critical path) and W (weight gradient, fills bubbles).
#include <algorithm>
#include <deque>

#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

PipelineSchedule make_zb_h1_schedule(int ranks, int micro_batches) {
  check_schedule_shape("zb-h1", ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    // 1F1B's warm-up; rank r then keeps up to r W passes pending. That gives every rank
    // K micro-batches in flight (rank 0 no more than in 1F1B), lets B passes start
    // earlier, and the pending W passes fill the cool-down where 1F1B waits.
    const int warmup = std::min(ranks - r - 1, micro_batches);
    std::deque<int> pending_w;
    auto& out = order[r];
    auto backward_input = [&](int m) {
      out.push_back(compute_pass(PipelineOp::BackwardInput, r, m));
      pending_w.push_back(m);
      if (static_cast<int>(pending_w.size()) > r) {
        out.push_back(compute_pass(PipelineOp::BackwardWeight, r, pending_w.front()));
        pending_w.pop_front();
      }
    };
    int f = 0, b = 0;
    while (f < warmup) out.push_back(compute_pass(PipelineOp::Forward, r, f++));
    while (f < micro_batches) {
      out.push_back(compute_pass(PipelineOp::Forward, r, f++));
      backward_input(b++);
    }
    while (b < micro_batches) backward_input(b++);
    for (int m : pending_w) out.push_back(compute_pass(PipelineOp::BackwardWeight, r, m));
  }
  return assemble_schedule("zb-h1", ranks, micro_batches, 1, order);
}

}  // namespace strata::parallel
