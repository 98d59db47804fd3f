// Behaviour every backend shares beyond single operations: barriers, splits, argument
// errors (each raising the same strata::Error on every backend, after which the
// communicator still works), size mismatches of point-to-point messages, and progress
// through is_completed(). One instantiation per backend of the registry (at the end).
#include <algorithm>
#include <thread>

#include "comm_test_support.h"
#include "strata/parallel/comm/backend_registry.h"

namespace strata::parallel::testing {
namespace {

std::string str(int64_t value) { return std::to_string(value); }

void barrier_body(Communicator& c) {
  for (int i = 0; i < 3; ++i) {
    WorkPtr work = c.barrier();
    while (!work->is_completed()) std::this_thread::yield();
    work->wait();
  }
}

void split_body(Communicator& c) {
  const int r = c.rank(), n = c.size();
  // Even and odd ranks; key -rank orders each group by descending world rank.
  auto sub = c.split(r % 2, -r);
  std::vector<int64_t> members;
  for (int q = n - 1; q >= 0; --q) {
    if (q % 2 == r % 2) members.push_back(q);
  }
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->backend(), c.backend());
  EXPECT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(sub->rank(), std::find(members.begin(), members.end(), r) - members.begin());

  // A collective on the sub-group while one on the parent is in flight.
  at::Tensor sum = at::full({3}, r, at::kLong);
  at::Tensor parent_sum = at::ones({2});
  WorkPtr parent_work = c.allreduce(parent_sum);
  sub->allreduce(sum)->wait();
  parent_work->wait();
  expect_tensor_eq(
      sum, at::full({3}, std::accumulate(members.begin(), members.end(), int64_t{0}), at::kLong),
      "sub-group allreduce on rank " + str(r));
  expect_tensor_eq(parent_sum, at::full({2}, n, at::kFloat), "parent allreduce on rank " + str(r));

  // Rows arrive in the sub-group's rank order.
  at::Tensor gathered = at::zeros({sub->size()}, at::kLong);
  sub->allgather(at::full({}, r, at::kLong), gathered)->wait();
  expect_tensor_eq(gathered, at::tensor(members), "sub-group allgather on rank " + str(r));

  // A negative color joins no group.
  auto rest = c.split(r == n - 1 ? -1 : 7, r);
  if (r == n - 1) {
    EXPECT_EQ(rest, nullptr);
  } else if (rest) {
    EXPECT_EQ(rest->size(), n - 1);
    EXPECT_EQ(rest->rank(), r);
    rest->barrier()->wait();
  } else {
    ADD_FAILURE() << "rank " << r << " got no communicator for a non-negative color";
  }

  // A split of a split.
  auto again = sub->split(0, sub->rank());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->size(), sub->size());
  EXPECT_EQ(again->rank(), sub->rank());
  again->barrier()->wait();
}

void bad_inputs_body(Communicator& c) {
  const int n = c.size();
  const std::string size = str(n);
  at::Tensor input = at::zeros({2});
  at::Tensor output = at::zeros({n + 1, 2});
  expect_error([&] { c.allgather(input, output); },
               "allgather output shape: got [" + str(n + 1) + ", 2], expected [" + size + ", 2]");
  output = at::zeros({n, 2}, at::kDouble);
  expect_error([&] { c.allgather(input, output); },
               "allgather output dtype: got Double, expected Float");

  at::Tensor longs = at::ones({3}, at::kLong);
  expect_error([&] { c.allreduce(longs, ReduceOp::Avg); },
               "allreduce avg needs a floating dtype, got Long");
  at::Tensor scattered = at::ones({1}, at::kLong);
  expect_error(
      [&] {
        c.reduce_scatter(at::ones({n, 1}, at::kLong), scattered, ReduceOp::Avg);
      },
      "reduce_scatter avg needs a floating dtype, got Long");
  at::Tensor row = at::zeros({2});
  expect_error(
      [&] {
        c.reduce_scatter(at::zeros({n + 1, 2}), row);
      },
      "reduce_scatter input shape: got [" + str(n + 1) + ", 2], expected [" + size + ", 2]");

  at::Tensor a_in = at::zeros({n, 2}), a_out = at::zeros({n, 2});
  std::vector<int64_t> ones(n, 1), too_many(n, 1), too_few(n - 1, 1), negative(n, 1);
  too_many[0] = 2;
  negative[0] = -1;
  negative[1] = 2;
  expect_error(
      [&] { c.alltoall(a_in, a_out, too_many, ones); },
      "alltoall send_splits: sum " + str(n + 1) + ", expected " + size + " (dim 0 of input)");
  expect_error(
      [&] { c.alltoall(a_in, a_out, ones, too_many); },
      "alltoall recv_splits: sum " + str(n + 1) + ", expected " + size + " (dim 0 of output)");
  expect_error([&] { c.alltoall(a_in, a_out, ones, too_few); },
               "alltoall recv_splits: got " + str(n - 1) + " entries, expected " + size);
  expect_error([&] { c.alltoall(a_in, a_out, negative, ones); },
               "alltoall send_splits[0]: got -1, expected >= 0");
  at::Tensor uneven = at::zeros({n + 1, 2});
  expect_error([&] { c.alltoall(uneven, a_out); },
               "alltoall input dim 0: got " + str(n + 1) + ", expected a multiple of the " + size);
  at::Tensor wrong_rows = at::zeros({n, 3});
  expect_error([&] { c.alltoall(a_in, wrong_rows, ones, ones); },
               "alltoall output row shape: got [3], expected [2]");

  expect_error([&] { c.isend(input, n, 0); },
               "isend dst: got " + size + ", expected a rank in [0, " + size + ")");
  expect_error([&] { c.irecv(input, -1, 0); }, "irecv src: got -1");
  expect_error([&] { c.isend(input, 0, -2); }, "isend tag: got -2, expected >= 0");
  expect_error([&] { c.broadcast(input, n); }, "broadcast root: got " + size);

  // Every rank raised alike: the communicator is still in step.
  at::Tensor after = at::ones({4});
  c.allreduce(after)->wait();
  expect_tensor_eq(after, at::full({4}, n, at::kFloat), "allreduce after the errors");
}

// Rank 0 sends 5 elements twice; rank 1 receives them into 4 and into 6 elements.
void recv_size_mismatch_body(Communicator& c) {
  if (c.rank() == 0) {
    auto first = c.isend(at::arange(5, at::kFloat), 1, 2);
    auto second = c.isend(at::arange(5, at::kFloat), 1, 2);
    first->wait();
    second->wait();
  } else if (c.rank() == 1) {
    at::Tensor small = at::zeros({4}), big = at::zeros({6});
    expect_error([&] { c.recv(small, 0, 2); }, "from rank 0 (tag 2)");
    expect_error([&] { c.recv(big, 0, 2); },
                 "recv from rank 0 (tag 2): got 5 elements, expected 6");
  }
  c.barrier()->wait();
}

// Nobody calls wait(): polling alone finishes the operation and copies the result back
// into the non-contiguous tensor.
void poll_body(Communicator& c) {
  const Case k{at::kFloat, {1024, 1024}, Layout::Transposed, ""};
  at::Tensor tensor = make_tensor(k, k.shape, c.rank(), 0);
  WorkPtr work = c.allreduce(tensor);
  while (!work->is_completed()) std::this_thread::yield();
  expect_tensor_eq(tensor, expected_reduction(k.dtype, k.shape, c.size(), ReduceOp::Sum, 0),
                   "polled allreduce on rank " + str(c.rank()));
  work->wait();
}

// The caller drops its tensors (and one work) while operations are in flight: works hold
// what they read and write until they complete.
void keep_alive_body(Communicator& c) {
  WorkPtr reduce, dropped;
  {
    at::Tensor t = at::ones({1 << 16});
    reduce = c.allreduce(t);
    at::Tensor u = at::ones({256, 256}).t();  // copied back on completion
    dropped = c.allreduce(u);
  }
  dropped.reset();  // never waited for
  reduce->wait();
  at::Tensor after = at::ones({3});
  c.allreduce(after)->wait();
  expect_tensor_eq(after, at::full({3}, c.size(), at::kFloat), "allreduce after dropped work");
}

// The bodies make CPU tensors of their own (beyond make_tensor): backends of other devices
// run the op suite only.
void run_semantics(const Body& body) {
  const BackendJob& job = CommunicatorSemantics::GetParam();
  if (communicator_backend(job.backend).device_type() != at::kCPU)
    GTEST_SKIP() << job.backend << ": the semantics bodies make CPU tensors";
  run_on(job, body);
}

}  // namespace

TEST_P(CommunicatorSemantics, WorksKeepTensorsAlive) { run_semantics(keep_alive_body); }
TEST_P(CommunicatorSemantics, Barrier) { run_semantics(barrier_body); }
TEST_P(CommunicatorSemantics, Split) { run_semantics(split_body); }
TEST_P(CommunicatorSemantics, BadInputsRaise) { run_semantics(bad_inputs_body); }
TEST_P(CommunicatorSemantics, RecvSizeMismatchRaises) {
  if (GetParam().backend == "gloo")
    GTEST_SKIP() << "Gloo aborts the process on a receive into a tensor of another size "
                    "(docs/reliability.md, \"Limits\")";
  run_semantics(recv_size_mismatch_body);
}
TEST_P(CommunicatorSemantics, IsCompletedMakesProgress) { run_semantics(poll_body); }

// One line per backend of the registry, as for the op suite (test_communicator_ops.cpp).
INSTANTIATE_TEST_SUITE_P(InProcess, CommunicatorSemantics,
                         ::testing::ValuesIn(backend_jobs("inprocess", {2, 4})), job_test_name);
INSTANTIATE_TEST_SUITE_P(Gloo, CommunicatorSemantics, ::testing::ValuesIn(backend_jobs("gloo")),
                         job_test_name);
INSTANTIATE_TEST_SUITE_P(Mpi, CommunicatorSemantics, ::testing::ValuesIn(backend_jobs("mpi")),
                         job_test_name);
INSTANTIATE_TEST_SUITE_P(MpiNccl, CommunicatorSemantics, ::testing::ValuesIn(backend_jobs("nccl")),
                         job_test_name);

}  // namespace strata::parallel::testing
