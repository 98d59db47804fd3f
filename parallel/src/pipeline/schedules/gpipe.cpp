// GPipe (Huang et al. 2019): every forward, then every backward.
#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

PipelineSchedule make_gpipe_schedule(int ranks, int micro_batches) {
  check_schedule_shape("gpipe", ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r) {
    for (int m = 0; m < micro_batches; ++m)
      order[r].push_back(compute_pass(PipelineOp::Forward, r, m));
    for (int m = 0; m < micro_batches; ++m)
      order[r].push_back(compute_pass(PipelineOp::Backward, r, m));
  }
  return assemble_schedule("gpipe", ranks, micro_batches, 1, order);
}

}  // namespace strata::parallel
