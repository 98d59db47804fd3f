// What only the in-process backend can promise: it sees every rank, so mismatched calls
// raise instead of corrupting data, and nothing waits forever (a rank that raised, left,
// aborted or never came turns into a strata::Error on the others).
#include <atomic>
#include <thread>

#include "comm_test_support.h"
#include "strata/core/error.h"
#include "strata/parallel/comm/inprocess_communicator.h"

namespace strata::parallel::testing {
namespace {

using namespace std::chrono_literals;

TEST(InProcessCommunicator, CreateChecksItsArguments) {
  expect_error([] { InProcessCommunicator::create(0); },
               "inprocess world size: got 0, expected >= 1");
  auto one = InProcessCommunicator::create(1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0]->size(), 1);
  EXPECT_EQ(one[0]->backend(), "inprocess");
  at::Tensor t = at::ones({3});
  one[0]->allreduce(t, ReduceOp::Avg)->wait();
  expect_tensor_eq(t, at::ones({3}), "allreduce on one rank");
}

TEST(InProcessCommunicator, BarrierWaitsForEveryRank) {
  std::atomic<int> arrived{0};
  run_in_process(4, [&](Communicator& c) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * c.rank()));
    ++arrived;
    c.barrier()->wait();
    EXPECT_EQ(arrived.load(), 4);
  });
}

TEST(InProcessCommunicator, CollectivesAreAsynchronous) {
  // Rank 1 starts its allreduce only after rank 0's call has returned and been polled.
  std::atomic<bool> polled{false};
  run_in_process(2, [&](Communicator& c) {
    at::Tensor t = at::ones({2});
    if (c.rank() == 0) {
      WorkPtr work = c.allreduce(t);
      EXPECT_FALSE(work->is_completed());
      polled = true;
      work->wait();
    } else {
      while (!polled) std::this_thread::yield();
      c.allreduce(t)->wait();
    }
    expect_tensor_eq(t, at::full({2}, 2.0), "allreduce");
  });
}

TEST(InProcessCommunicator, IrecvPostedBeforeTheSend) {
  run_in_process(2, [](Communicator& c) {
    if (c.rank() == 1) {
      at::Tensor t = at::zeros({3}, at::kLong);
      WorkPtr work = c.irecv(t, 0, 1);
      EXPECT_FALSE(work->is_completed());
      c.barrier()->wait();
      work->wait();
      expect_tensor_eq(t, at::arange(3, at::kLong), "irecv");
    } else {
      c.barrier()->wait();
      c.send(at::arange(3, at::kLong), 1, 1);
    }
  });
}

TEST(InProcessCommunicator, RecvChecksTheDtype) {
  run_in_process(2, [](Communicator& c) {
    if (c.rank() == 0) c.send(at::ones({3}, at::kInt), 1);
    if (c.rank() == 1) {
      at::Tensor t = at::zeros({3});
      expect_error([&] { c.recv(t, 0); },
                   "recv from rank 0 (tag 0) dtype: got Int, expected Float");
    }
  });
}

TEST(InProcessCommunicator, ARankThatRaisesFailsTheOthersCall) {
  run_in_process(3, [](Communicator& c) {
    at::Tensor input = at::zeros({2});
    at::Tensor output = at::zeros({c.rank() == 1 ? 4 : 3, 2});  // wrong on rank 1
    if (c.rank() == 1) {
      expect_error([&] { c.allgather(input, output); }, "allgather output shape: got [4, 2]");
    } else {
      WorkPtr work = c.allgather(input, output);
      expect_error([&] { work->wait(); }, "allgather failed on rank 1: allgather output shape");
    }
    // Every rank took part in the failed call: the next one works.
    at::Tensor t = at::ones({1});
    c.allreduce(t)->wait();
    expect_tensor_eq(t, at::full({1}, 3.0), "allreduce after the failed call");
  });
}

TEST(InProcessCommunicator, MismatchedCallsRaise) {
  run_in_process(2, [](Communicator& c) {
    at::Tensor t = at::ones({2});
    WorkPtr work = c.rank() == 0 ? c.allreduce(t) : c.broadcast(t, 0);
    expect_error([&] { work->wait(); }, "collective mismatch: call #0 is ");
    at::Tensor shaped = at::ones({c.rank() + 1});
    work = c.allreduce(shaped);
    expect_error([&] { work->wait(); },
                 "allreduce arguments differ between ranks: rank 0 passed Float [1] sum, rank 1 "
                 "passed Float [2] sum");
    std::vector<int64_t> splits =
        c.rank() == 0 ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{0, 2};
    at::Tensor in = at::zeros({2}), out = at::zeros({2});
    work = c.alltoall(in, out, splits, splits);
    expect_error([&] { work->wait(); }, "alltoall: rank 0 sends 1 rows to rank 1, which expects 0");
  });
}

TEST(InProcessCommunicator, TimesOutNamingTheMissingRank) {
  auto comms = InProcessCommunicator::create(2, 100ms);
  at::Tensor t = at::ones({1});
  WorkPtr work = comms[0]->allreduce(t);
  expect_error([&] { work->wait(); }, "timed out after 100 ms waiting for ranks [1]");
  // The job is aborted: rank 1 learns it at once.
  expect_error([&] { comms[1]->barrier(); }, "inprocess communicator aborted");
}

TEST(InProcessCommunicator, ARankThatLeftFailsTheOthers) {
  auto comms = InProcessCommunicator::create(2);
  comms[1].reset();
  at::Tensor t = at::ones({1});
  WorkPtr work = comms[0]->allreduce(t);
  expect_error([&] { work->wait(); }, "rank 1 left the group");
  at::Tensor r = at::zeros({1});
  WorkPtr recv = comms[0]->irecv(r, 1);
  expect_error([&] { recv->wait(); }, "rank 1 left the group");
}

TEST(InProcessCommunicator, AbortWakesEveryWaiter) {
  auto comms = InProcessCommunicator::create(3);
  at::Tensor t = at::ones({1}), r = at::zeros({1});
  WorkPtr collective = comms[0]->allreduce(t);
  WorkPtr recv = comms[2]->irecv(r, 1);
  std::thread aborter([&] {
    std::this_thread::sleep_for(20ms);
    comms[1]->abort("rank 1 lost its device");
  });
  expect_error([&] { collective->wait(); }, "aborted: rank 1: rank 1 lost its device");
  expect_error([&] { recv->wait(); }, "aborted: rank 1: rank 1 lost its device");
  aborter.join();
  expect_error([&] { comms[2]->isend(t, 0); }, "aborted");
}

TEST(InProcessCommunicator, SplitGroupsShareTheJobsAbort) {
  run_in_process(2, [](Communicator& c) {
    auto sub = c.split(0, c.rank());
    ASSERT_TRUE(sub);
    if (c.rank() == 0) {
      at::Tensor t = at::ones({1});
      // Rank 1 never joins: it aborts the world, before or after this call starts.
      expect_error([&] { sub->allreduce(t)->wait(); }, "aborted: rank 1: gave up");
    } else {
      static_cast<InProcessCommunicator&>(c).abort("gave up");
    }
  });
}

}  // namespace
}  // namespace strata::parallel::testing
