// --checkpoint-every auto's arithmetic: Daly's interval, its limits, and the choice in steps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/scoped_env.h"
#include "core/test_util.h"
#include "strata/programs/checkpoint_interval.h"

namespace strata::programs {
namespace {

using strata::test::error_of;
using testing::HasSubstr;

TEST(CheckpointInterval, DalyMatchesAWorkedExample) {
  // C = 60 s, M = 24 h: sqrt(2 C M) = 3219.9 s, Daly's correction adds 0.6% and takes C.
  EXPECT_NEAR(daly_interval_seconds(60, 86400), 3180.06, 0.01);
}

TEST(CheckpointInterval, DalyTendsToYoungForCheapCheckpoints) {
  const double c = 1, m = 1e7;
  EXPECT_NEAR(daly_interval_seconds(c, m) / std::sqrt(2 * c * m), 1.0, 1e-3);
}

TEST(CheckpointInterval, FailuresFasterThanCheckpointsGiveTheMtbf) {
  EXPECT_EQ(daly_interval_seconds(500, 100), 100);
}

TEST(CheckpointInterval, StepsNodesAndLostWork) {
  CheckpointCosts costs;
  costs.checkpoint_seconds = 60;
  costs.restart_seconds = 30;
  costs.step_seconds = 2;
  costs.mtbf_hours_per_node = 24 * 100;  // 100 nodes of one day's MTBF each: M = 24 h
  costs.nodes = 100;
  const CheckpointInterval chosen = choose_checkpoint_interval(costs);
  EXPECT_DOUBLE_EQ(chosen.job_mtbf_seconds, 86400);
  EXPECT_NEAR(chosen.seconds, 3180.06, 0.01);
  EXPECT_EQ(chosen.steps, 1590);
  EXPECT_DOUBLE_EQ(chosen.expected_lost_seconds, 1590 * 2 / 2.0 + 30);
  costs.step_seconds = 1e6;  // a step longer than the interval: still one step
  EXPECT_EQ(choose_checkpoint_interval(costs).steps, 1);
}

TEST(CheckpointInterval, RefusesCostsThatAreNotCosts) {
  CheckpointCosts costs;
  costs.checkpoint_seconds = 1;
  costs.step_seconds = 1;
  EXPECT_THAT(error_of([&] { choose_checkpoint_interval(costs); }),
              HasSubstr("--mtbf-hours must be > 0, got 0"));
  costs.mtbf_hours_per_node = 1;
  costs.checkpoint_seconds = 0;
  EXPECT_THAT(error_of([&] { choose_checkpoint_interval(costs); }),
              HasSubstr("the checkpoint time must be > 0"));
}

TEST(CheckpointInterval, NodesFromTheLauncher) {
  strata::test::ScopedEnv strata_run("LOCAL_WORLD_SIZE", std::nullopt);
  strata::test::ScopedEnv mpirun("OMPI_COMM_WORLD_LOCAL_SIZE", std::nullopt);
  EXPECT_EQ(job_nodes(8), 1);
  mpirun.set("4");
  EXPECT_EQ(job_nodes(8), 2);
  strata_run.set("3");
  EXPECT_EQ(job_nodes(8), 3);  // strata-run's first; 8 ranks of 3 per node need 3 nodes
}

}  // namespace
}  // namespace strata::programs
