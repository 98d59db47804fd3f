#include "strata/parallel/process_grid.h"

#include "strata/core/error.h"

namespace strata::parallel {

ProcessGrid::ProcessGrid(CommunicatorPtr world, ProcessGridOptions options)
    : world_(std::move(world)), options_(options) {
  STRATA_CHECK(world_, "process grid world: got a null communicator, expected one");
  const int world_size = world_->size();
  int& dp = options_.data_parallel();
  STRATA_CHECK(dp == -1 || dp >= 1, "data-parallel size: got ", dp,
               ", expected -1 (all ranks) or at least 1");
  if (dp == -1) dp = world_size;
  STRATA_CHECK(world_size % dp == 0, "data-parallel size ", dp, " does not divide world size ",
               world_size);
  // The data-parallel index varies fastest: a group is dp consecutive ranks, and
  // rank / dp is the index along the other dimensions (pipeline stage, later).
  const int outer_index = rank() / dp;
  data_parallel_ = dp == world_size ? world_ : world_->split(outer_index, rank());
}

}  // namespace strata::parallel
