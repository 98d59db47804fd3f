// ProcessGrid on both backends: the default grid, every pipeline x data-parallel layout of
// the world (group memberships read back by all-gathering world ranks inside each group),
// pp = 2 x dp = 2 on four ranks spelled out, the expert groups, and the layouts it must
// refuse.
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/data/process_grid.h"

namespace strata::parallel::testing {
namespace {

// The world ranks of `group`'s members, in group rank order.
std::vector<int64_t> members(const CommunicatorPtr& group, int world_rank) {
  at::Tensor mine = at::full({1}, world_rank, at::kLong);
  at::Tensor all = at::empty({group->size(), 1}, at::kLong);
  group->allgather(mine, all)->wait();
  all = all.flatten();
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
}

std::string layout_name(int pp, int dp) {
  return "pp " + std::to_string(pp) + " x dp " + std::to_string(dp);
}

// Checks this rank's groups of a pp x dp grid against rank = pp_index * dp + dp_index.
void expect_layout(const ProcessGrid& grid, int pp, int dp) {
  SCOPED_TRACE(layout_name(pp, dp) + ", world rank " + std::to_string(grid.rank()));
  const int r = grid.rank();
  const int pp_index = r / dp, dp_index = r % dp;
  EXPECT_EQ(grid.pipeline_size(), pp);
  EXPECT_EQ(grid.data_parallel_size(), dp);
  EXPECT_EQ(grid.options().pipeline_parallel(), pp);
  EXPECT_EQ(grid.options().data_parallel(), dp);
  ASSERT_TRUE(grid.pipeline());
  ASSERT_TRUE(grid.data_parallel());
  EXPECT_EQ(grid.pipeline()->size(), pp);
  EXPECT_EQ(grid.data_parallel()->size(), dp);
  EXPECT_EQ(grid.pipeline_rank(), pp_index);
  EXPECT_EQ(grid.pipeline()->rank(), pp_index);
  EXPECT_EQ(grid.data_parallel_rank(), dp_index);

  std::vector<int64_t> pipeline_group, data_parallel_group;
  for (int s = 0; s < pp; ++s) pipeline_group.push_back(s * dp + dp_index);
  for (int d = 0; d < dp; ++d) data_parallel_group.push_back(pp_index * dp + d);
  EXPECT_EQ(members(grid.pipeline(), r), pipeline_group);
  EXPECT_EQ(members(grid.data_parallel(), r), data_parallel_group);
  // A whole-world group is the world communicator itself, not a copy.
  EXPECT_EQ(grid.pipeline() == grid.world(), pp == grid.size());
  EXPECT_EQ(grid.data_parallel() == grid.world(), dp == grid.size());
}

void default_grid_body(Communicator& c) {
  auto world = c.shared_from_this();
  ProcessGrid grid(world);
  EXPECT_EQ(grid.world(), world);
  EXPECT_EQ(grid.data_parallel(), world);  // all ranks: no new communicator
  EXPECT_EQ(grid.rank(), c.rank());
  EXPECT_EQ(grid.size(), c.size());
  // pp = 1: the old one-dimensional grid, each rank its own one-stage pipeline.
  expect_layout(grid, 1, c.size());
}

// Every pp that divides the world, given as pp alone (dp = -1), as pp and dp, and as dp
// alone where that is the whole world.
void every_layout_body(Communicator& c) {
  const int n = c.size();
  for (int pp = 1; pp <= n; ++pp) {
    if (n % pp != 0) continue;
    const int dp = n / pp;
    expect_layout(ProcessGrid(c.shared_from_this(), ProcessGridOptions().pipeline_parallel(pp)), pp,
                  dp);
    expect_layout(ProcessGrid(c.shared_from_this(),
                              ProcessGridOptions().pipeline_parallel(pp).data_parallel(dp)),
                  pp, dp);
  }
  expect_layout(ProcessGrid(c.shared_from_this(), ProcessGridOptions().data_parallel(n)), 1, n);
}

// What the pipeline needs of the groups: each stage's replicas all-reduce its gradients,
// and stage s sends activations to stage s + 1 over the pipeline group.
void groups_carry_traffic_body(Communicator& c) {
  const int n = c.size();
  for (int pp = 1; pp <= n; ++pp) {
    if (n % pp != 0) continue;
    const int dp = n / pp;
    SCOPED_TRACE(layout_name(pp, dp));
    ProcessGrid grid(c.shared_from_this(), ProcessGridOptions().pipeline_parallel(pp));
    const int r = c.rank(), first = r - r % dp;

    at::Tensor grad = at::full({1}, r, at::kLong);
    grid.data_parallel()->allreduce(grad)->wait();
    // first + (first + 1) + ... + (first + dp - 1)
    expect_tensor_eq(grad, at::full({1}, dp * first + dp * (dp - 1) / 2, at::kLong),
                     "data-parallel allreduce");

    const int stage = grid.pipeline_rank();
    if (stage + 1 < pp) grid.pipeline()->send(at::full({1}, r, at::kLong), stage + 1);
    if (stage > 0) {
      at::Tensor activation = at::empty({1}, at::kLong);
      grid.pipeline()->recv(activation, stage - 1);
      expect_tensor_eq(activation, at::full({1}, r - dp, at::kLong),
                       "activation from stage " + std::to_string(stage - 1));
    }
  }
}

// pp = 2 x dp = 2 written out, so the layout does not rest on the formula alone.
void two_by_two_body(Communicator& c) {
  ASSERT_EQ(c.size(), 4);
  const int r = c.rank();
  ProcessGrid grid(c.shared_from_this(),
                   ProcessGridOptions().pipeline_parallel(2).data_parallel(2));
  const std::vector<std::vector<int64_t>> pipeline_groups = {{0, 2}, {1, 3}, {0, 2}, {1, 3}};
  const std::vector<std::vector<int64_t>> data_parallel_groups = {{0, 1}, {0, 1}, {2, 3}, {2, 3}};
  const int stages[] = {0, 0, 1, 1};
  EXPECT_EQ(members(grid.pipeline(), r), pipeline_groups[r]);
  EXPECT_EQ(members(grid.data_parallel(), r), data_parallel_groups[r]);
  EXPECT_EQ(grid.pipeline_rank(), stages[r]);
  EXPECT_EQ(grid.data_parallel_rank(), r % 2);
}

void bad_layouts_body(Communicator& c) {
  const int n = c.size();
  const auto grid = [&](ProcessGridOptions options) {
    return [&c, options] { ProcessGrid(c.shared_from_this(), options); };
  };
  const std::string world = std::to_string(n);
  expect_error(grid(ProcessGridOptions().pipeline_parallel(0)),
               "pipeline-parallel size: got 0, expected at least 1");
  expect_error(grid(ProcessGridOptions().pipeline_parallel(-1)),
               "pipeline-parallel size: got -1, expected at least 1");
  expect_error(grid(ProcessGridOptions().data_parallel(0)),
               "data-parallel size: got 0, expected -1 (world size / pipeline-parallel size) or "
               "at least 1");
  expect_error(grid(ProcessGridOptions().data_parallel(-2)), "data-parallel size: got -2");
  expect_error(
      grid(ProcessGridOptions().pipeline_parallel(n + 1)),
      "pipeline-parallel size " + std::to_string(n + 1) + " does not divide world size " + world);
  expect_error(grid(ProcessGridOptions().pipeline_parallel(2).data_parallel(3)),
               "pipeline 2 x data parallel 3 = 6 ranks, but the world has " + world);
  // dp alone must now be the whole world: smaller groups need their pipeline size too.
  expect_error(grid(ProcessGridOptions().data_parallel(n + 1)),
               "pipeline 1 x data parallel " + std::to_string(n + 1) + " = " +
                   std::to_string(n + 1) + " ranks, but the world has " + world);
  expect_error([] { ProcessGrid(nullptr); }, "process grid world: got a null communicator");
  // Every rank refused alike and nothing was split: the world still works.
  at::Tensor t = at::ones({1}, at::kLong);
  c.allreduce(t)->wait();
  expect_tensor_eq(t, at::full({1}, n, at::kLong), "allreduce after the refusals");
}

// Expert groups of every pp x dp x ep layout: with ep_index = dp_index % ep, the expert
// group is the ep consecutive replicas with the same dp_index / ep, ordered by ep_index,
// and the expert-data group the dp / ep replicas with the same ep_index.
void expert_groups_body(Communicator& c) {
  const int n = c.size(), r = c.rank();
  for (int pp = 1; pp <= n; ++pp) {
    if (n % pp != 0) continue;
    const int dp = n / pp;
    for (int ep = 1; ep <= dp; ++ep) {
      if (dp % ep != 0) continue;
      SCOPED_TRACE(layout_name(pp, dp) + " x ep " + std::to_string(ep));
      ProcessGrid grid(c.shared_from_this(),
                       ProcessGridOptions().pipeline_parallel(pp).expert_parallel(ep));
      const int stage_first = r - r % dp, dp_index = r % dp, ep_index = dp_index % ep;
      std::vector<int64_t> expert_group, expert_data_group;
      for (int e = 0; e < ep; ++e) expert_group.push_back(stage_first + dp_index - ep_index + e);
      for (int d = ep_index; d < dp; d += ep) expert_data_group.push_back(stage_first + d);
      EXPECT_EQ(grid.expert_parallel_size(), ep);
      EXPECT_EQ(grid.expert_parallel_rank(), ep_index);
      EXPECT_EQ(members(grid.expert_parallel(), r), expert_group);
      EXPECT_EQ(members(grid.expert_data_parallel(), r), expert_data_group);
    }
  }
  expect_error([&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().expert_parallel(0)); },
               "expert-parallel size 0, expected a divisor of the data-parallel size");
  expect_error(
      [&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().expert_parallel(n + 1)); },
      "expert-parallel size " + std::to_string(n + 1) +
          ", expected a divisor of the data-parallel size " + std::to_string(n));
}

}  // namespace

STRATA_COMM_TEST(ProcessGrid, ExpertGroupsOfEveryLayout, expert_groups_body)
STRATA_COMM_TEST(ProcessGrid, DefaultIsOneDataParallelGroup, default_grid_body)
STRATA_COMM_TEST(ProcessGrid, EveryPipelineByDataParallelLayout, every_layout_body)
STRATA_COMM_TEST(ProcessGrid, GroupsCarryGradientsAndActivations, groups_carry_traffic_body)
STRATA_COMM_TEST(ProcessGrid, RefusesImpossibleLayouts, bad_layouts_body)

TEST(InProcessProcessGrid, TwoByTwoOnFourRanks) { run_in_process(4, two_by_two_body); }

TEST(MpiProcessGrid, TwoByTwoOnFourRanks) {
  if (MpiCommunicator::world()->size() != 4) GTEST_SKIP() << "needs mpirun -np 4";
  run_mpi(two_by_two_body);
}

TEST(InProcessProcessGrid, ErrorsOnFourRanks) {
  run_in_process(4, [](Communicator& c) {
    expect_error(
        [&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().pipeline_parallel(3)); },
        "pipeline-parallel size 3 does not divide world size 4");
    expect_error(
        [&] {
          ProcessGrid(c.shared_from_this(),
                      ProcessGridOptions().pipeline_parallel(3).data_parallel(1));
        },
        "pipeline 3 x data parallel 1 = 3 ranks, but the world has 4");
    expect_error([&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().data_parallel(2)); },
                 "pipeline 1 x data parallel 2 = 2 ranks, but the world has 4");
  });
}

}  // namespace strata::parallel::testing
