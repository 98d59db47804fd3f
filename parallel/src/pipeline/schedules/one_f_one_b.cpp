// 1F1B (PipeDream-Flush, Narayanan et al. 2021): after a warm-up, one forward then one
// backward, so that a rank holds at most K micro-batches instead of GPipe's M.
#include <algorithm>

#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

PipelineSchedule make_1f1b_schedule(int ranks, int micro_batches) {
  check_schedule_shape("1f1b", ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    const int warmup = std::min(ranks - r - 1, micro_batches);
    int f = 0, b = 0;
    while (f < warmup) order[r].push_back(compute_pass(PipelineOp::Forward, r, f++));
    while (f < micro_batches) {
      order[r].push_back(compute_pass(PipelineOp::Forward, r, f++));
      order[r].push_back(compute_pass(PipelineOp::Backward, r, b++));
    }
    while (b < micro_batches) order[r].push_back(compute_pass(PipelineOp::Backward, r, b++));
  }
  return assemble_schedule("1f1b", ranks, micro_batches, 1, order);
}

}  // namespace strata::parallel
