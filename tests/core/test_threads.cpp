#include <gtest/gtest.h>
#include "strata/core/threads.h"
TEST(Threads, DefaultIsAtLeastOne) { EXPECT_GE(strata::core::default_threads_per_rank(), 1); }
