#include <gtest/gtest.h>
#include "strata/parallel/comm/communicator.h"
TEST(ReduceOpNames, AreLowerCase) {
  EXPECT_EQ(strata::parallel::to_string(strata::parallel::ReduceOp::Avg), "avg");
}
