// ProcessGrid on both backends: the default grid, data-parallel groups of consecutive
// ranks, and the layouts it must refuse.
#include "comm_test_support.h"
#include "strata/parallel/process_grid.h"

namespace strata::parallel::testing {
namespace {

void default_grid_body(Communicator& c) {
  auto world = c.shared_from_this();
  ProcessGrid grid(world);
  EXPECT_EQ(grid.world(), world);
  EXPECT_EQ(grid.data_parallel(), world);  // all ranks: no new communicator
  EXPECT_EQ(grid.rank(), c.rank());
  EXPECT_EQ(grid.size(), c.size());
  EXPECT_EQ(grid.options().data_parallel(), c.size());
}

// Groups of dp consecutive ranks, for every dp that divides the world size.
void data_parallel_groups_body(Communicator& c) {
  const int r = c.rank(), n = c.size();
  for (int dp = 1; dp <= n; ++dp) {
    if (n % dp != 0) continue;
    ProcessGrid grid(c.shared_from_this(), ProcessGridOptions().data_parallel(dp));
    auto group = grid.data_parallel();
    ASSERT_TRUE(group);
    EXPECT_EQ(group->size(), dp);
    EXPECT_EQ(group->rank(), r % dp);
    const int first = r - r % dp;
    at::Tensor t = at::full({1}, r, at::kLong);
    group->allreduce(t)->wait();
    // first + (first + 1) + ... + (first + dp - 1)
    expect_tensor_eq(t, at::full({1}, dp * first + dp * (dp - 1) / 2, at::kLong),
                     "data-parallel allreduce, dp " + std::to_string(dp));
  }
}

void bad_layouts_body(Communicator& c) {
  const int n = c.size();
  expect_error([&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().data_parallel(n + 1)); },
               "data-parallel size " + std::to_string(n + 1) + " does not divide world size " +
                   std::to_string(n));
  expect_error([&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().data_parallel(0)); },
               "data-parallel size: got 0, expected -1 (all ranks) or at least 1");
  expect_error([] { ProcessGrid(nullptr); }, "process grid world: got a null communicator");
}

}  // namespace

STRATA_COMM_TEST(ProcessGrid, DefaultIsOneDataParallelGroup, default_grid_body)
STRATA_COMM_TEST(ProcessGrid, DataParallelGroupsAreConsecutiveRanks, data_parallel_groups_body)
STRATA_COMM_TEST(ProcessGrid, RefusesImpossibleLayouts, bad_layouts_body)

TEST(InProcessProcessGrid, ThreeDoesNotDivideFour) {
  run_in_process(4, [](Communicator& c) {
    expect_error([&] { ProcessGrid(c.shared_from_this(), ProcessGridOptions().data_parallel(3)); },
                 "data-parallel size 3 does not divide world size 4");
  });
}

}  // namespace strata::parallel::testing
