// Megatron-LM's interleaved 1F1B (Narayanan et al. 2021): v model chunks per rank, stage
// s on rank s % K, so the warm-up and cool-down are made of chunk-sized passes.
#include <algorithm>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

PipelineSchedule make_interleaved_1f1b_schedule(int ranks, int micro_batches, int virtual_stages) {
  check_schedule_shape("interleaved", ranks, micro_batches, virtual_stages);
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
      return compute_pass(PipelineOp::Forward, chunk * ranks + r, micro_batch(k));
    };
    auto backward = [&](int k) {
      const int chunk = virtual_stages - 1 - (k / ranks) % virtual_stages;
      return compute_pass(PipelineOp::Backward, chunk * ranks + r, micro_batch(k));
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
  return assemble_schedule("interleaved", ranks, micro_batches, virtual_stages, order);
}

}  // namespace strata::parallel
