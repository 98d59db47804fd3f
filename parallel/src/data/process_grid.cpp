#include "strata/parallel/data/process_grid.h"

#include "strata/core/error.h"

namespace strata::parallel {

namespace {

// The group of ranks with the same `color`, ordered by `key`. A group of the whole world
// is the world itself, so a one-dimensional grid creates no new communicator.
CommunicatorPtr group(const CommunicatorPtr& world, int group_size, int color, int key) {
  return group_size == world->size() ? world : world->split(color, key);
}

}  // namespace

ProcessGrid::ProcessGrid(CommunicatorPtr world, ProcessGridOptions options)
    : world_(std::move(world)), options_(options) {
  STRATA_CHECK(world_, "process grid world: got a null communicator, expected one");
  const int world_size = world_->size();
  int& pp = options_.pipeline_parallel();
  int& dp = options_.data_parallel();
  // Every check comes before the first split, so a bad layout fails on every rank alike
  // instead of leaving some ranks waiting in a collective.
  STRATA_CHECK(pp >= 1, "pipeline-parallel size: got ", pp, ", expected at least 1");
  STRATA_CHECK(dp == -1 || dp >= 1, "data-parallel size: got ", dp,
               ", expected -1 (world size / pipeline-parallel size) or at least 1");
  if (dp == -1) {
    STRATA_CHECK(world_size % pp == 0, "pipeline-parallel size ", pp,
                 " does not divide world size ", world_size);
    dp = world_size / pp;
  }
  STRATA_CHECK(static_cast<long long>(pp) * dp == world_size, "pipeline ", pp, " x data parallel ",
               dp, " = ", static_cast<long long>(pp) * dp, " ranks, but the world has ",
               world_size);
  const int ep = options_.expert_parallel();
  STRATA_CHECK(ep >= 1 && dp % ep == 0, "expert-parallel size ", ep,
               ", expected a divisor of the data-parallel size ", dp);

  // rank = pp_index * dp + dp_index (see the header). Both splits run on every rank, in
  // this order, as collectives must.
  const int pp_index = rank() / dp;
  const int dp_index = rank() % dp;
  data_parallel_ = group(world_, dp, /*color=*/pp_index, /*key=*/dp_index);
  pipeline_ = group(world_, pp, /*color=*/dp_index, /*key=*/pp_index);
  // With ep = 1 the expert-data group is the data group, with ep = dp the expert group
  // is: no new communicator then. Otherwise colors are unique over the world: one group
  // per (stage, dp_index / ep), resp. per (stage, ep_index).
  const int ep_index = dp_index % ep;
  expert_parallel_ = ep == dp ? data_parallel_
                              : world_->split(/*color=*/pp_index * (dp / ep) + dp_index / ep,
                                              /*key=*/ep_index);
  expert_data_parallel_ = ep == 1 ? data_parallel_
                                  : group(world_, dp / ep, /*color=*/pp_index * ep + ep_index,
                                          /*key=*/dp_index / ep);
}

}  // namespace strata::parallel
