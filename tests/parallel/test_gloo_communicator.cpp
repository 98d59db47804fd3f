// What the op suite (Gloo2/GlooOps) does not cover on Gloo: split, barrier, messages to
// oneself posted before their send, and the tag limit of its slot scheme.
#include <gtest/gtest.h>

#include "comm_test_support.h"
#include "strata/parallel/control/control_plane.h"

namespace {

using strata::parallel::Communicator;
using strata::parallel::testing::expect_error;
using strata::parallel::testing::run_gloo;

TEST(GlooCommunicator, SplitBarrierAndSelfMessages) {
  if (!strata::parallel::gloo_available()) GTEST_SKIP() << "built without Gloo";
  run_gloo(2, [](Communicator& c) {
    const int r = c.rank();
    EXPECT_EQ(c.backend(), "gloo");
    // Keys reversed: the new group's rank 0 is world rank 1.
    auto reversed = c.split(0, -r);
    ASSERT_NE(reversed, nullptr);
    EXPECT_EQ(reversed->size(), 2);
    EXPECT_EQ(reversed->rank(), 1 - r);
    at::Tensor t = at::full({3}, static_cast<float>(r + 1));
    reversed->broadcast(t, 0)->wait();  // from world rank 1
    EXPECT_TRUE(t.equal(at::full({3}, 2.0f)));
    reversed->barrier()->wait();
    // Alone: a group of one per rank; a negative color joins nothing.
    auto alone = c.split(r, 0);
    ASSERT_NE(alone, nullptr);
    EXPECT_EQ(alone->size(), 1);
    at::Tensor mine = at::full({2}, 5.0f + r);
    alone->allreduce(mine)->wait();
    EXPECT_TRUE(mine.equal(at::full({2}, 5.0f + r)));
    auto maybe = c.split(r == 0 ? -1 : 1, 0);
    if (r == 0) {
      EXPECT_EQ(maybe, nullptr);
    } else {
      ASSERT_NE(maybe, nullptr);
      EXPECT_EQ(maybe->size(), 1);
    }
    // A receive from oneself posted before the send, and two on one tag kept in order.
    at::Tensor a = at::empty({2}), b = at::empty({2});
    auto first = c.irecv(a, r, 3);
    auto second = c.irecv(b, r, 3);
    EXPECT_FALSE(first->is_completed());
    c.send(at::full({2}, 1.0f), r, 3);
    c.send(at::full({2}, 2.0f), r, 3);
    first->wait();
    second->wait();
    EXPECT_TRUE(a.equal(at::full({2}, 1.0f)));
    EXPECT_TRUE(b.equal(at::full({2}, 2.0f)));
    expect_error([&] { c.isend(at::ones({1}), 1 - r, 40000); }, "expected less than 32768");
    c.barrier()->wait();
  });
}

}  // namespace
