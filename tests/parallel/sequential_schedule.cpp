#include "sequential_schedule.h"

#include "strata/parallel/pipeline/schedule_registry.h"

namespace strata::parallel::testing {

namespace {

PipelineSchedule make_sequential_schedule(int ranks, int micro_batches, int /*virtual_stages*/) {
  check_schedule_shape(kSequentialSchedule, ranks, micro_batches, 1);
  std::vector<std::vector<PipelineInstruction>> order(ranks);
  for (int r = 0; r < ranks; ++r)
    for (int m = 0; m < micro_batches; ++m) {
      order[r].push_back(compute_pass(PipelineOp::Forward, r, m));
      order[r].push_back(compute_pass(PipelineOp::Backward, r, m));
    }
  return assemble_schedule(kSequentialSchedule, ranks, micro_batches, 1, order);
}

}  // namespace

void register_sequential_schedule() {
  // Once per process: the registry refuses a second registration of a name.
  static const bool registered = [] {
    register_schedule({kSequentialSchedule, make_sequential_schedule, false,
                       "one micro-batch at a time through every stage (a test schedule)"});
    return true;
  }();
  (void)registered;
}

}  // namespace strata::parallel::testing
