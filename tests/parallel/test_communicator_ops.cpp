// Every communicator operation, for every case of op_cases(), on every backend of the
// registry: one body per operation, one instantiation per backend (at the end).
#include <numeric>

#include "comm_test_support.h"

namespace strata::parallel::testing {
namespace {

std::vector<int64_t> with_leading(int64_t leading, at::IntArrayRef shape) {
  std::vector<int64_t> out{leading};
  out.insert(out.end(), shape.begin(), shape.end());
  return out;
}

// Runs `op` on the test's case, on every rank of the test's backend job.
void run_op(void (*op)(Communicator&, const Case&)) {
  const OpParam& param = CommunicatorOps::GetParam();
  run_on(std::get<0>(param), [&](Communicator& c) { op(c, std::get<1>(param)); });
}

std::string at_rank(const char* what, int rank) {
  return std::string(what) + " on rank " + std::to_string(rank);
}

// Blocking ring: rank r sends to r+1 and receives from r-1. Rank 0 sends first and the
// others receive first, so no blocking send waits on a rank that is sending too.
void send_recv(Communicator& c, const Case& k) {
  const int r = c.rank(), n = c.size(), next = (r + 1) % n, prev = (r + n - 1) % n;
  at::Tensor mine = make_tensor(k, k.shape, r, 0);
  at::Tensor got = make_output(k, k.shape);
  if (r == 0) {
    c.send(mine, next, 3);
    c.recv(got, prev, 3);
  } else {
    c.recv(got, prev, 3);
    c.send(mine, next, 3);
  }
  expect_tensor_eq(got, make_values(k.dtype, k.shape, prev, 0), at_rank("recv", r));
}

// Two messages with the same tag to itself and to the next rank, received in the order
// sent although waited for in reverse; one with another tag in between.
void isend_irecv(Communicator& c, const Case& k) {
  const int r = c.rank(), n = c.size();
  struct Receive {
    WorkPtr work;
    at::Tensor tensor;
    int src, salt;
  };
  auto tag_of = [](int salt) { return salt == 2 ? 9 : 4; };
  std::vector<WorkPtr> sends;
  std::vector<Receive> receives;
  for (int dst : {r, (r + 1) % n}) {
    for (int salt : {1, 2, 3})
      sends.push_back(c.isend(make_tensor(k, k.shape, r, salt), dst, tag_of(salt)));
  }
  for (int src : {r, (r + n - 1) % n}) {
    for (int salt : {1, 2, 3}) {
      at::Tensor tensor = make_output(k, k.shape);
      receives.push_back({c.irecv(tensor, src, tag_of(salt)), tensor, src, salt});
    }
  }
  for (auto it = receives.rbegin(); it != receives.rend(); ++it) {
    it->work->wait();
    EXPECT_TRUE(it->work->is_completed());
    expect_tensor_eq(it->tensor, make_values(k.dtype, k.shape, it->src, it->salt),
                     at_rank("irecv", r) + " from " + std::to_string(it->src));
  }
  for (auto& work : sends) work->wait();
}

// All ops in flight at once, waited for in reverse order.
void allreduce(Communicator& c, const Case& k) {
  const auto ops = reduce_ops(k.dtype);
  std::vector<at::Tensor> tensors;
  std::vector<WorkPtr> works;
  for (size_t i = 0; i < ops.size(); ++i) {
    tensors.push_back(make_tensor(k, k.shape, c.rank(), static_cast<int>(i)));
    works.push_back(c.allreduce(tensors.back(), ops[i]));
  }
  for (size_t i = ops.size(); i-- > 0;) {
    works[i]->wait();
    expect_tensor_eq(tensors[i],
                     expected_reduction(k.dtype, k.shape, c.size(), ops[i], static_cast<int>(i)),
                     at_rank(("allreduce " + to_string(ops[i])).c_str(), c.rank()));
  }
}

void broadcast(Communicator& c, const Case& k) {
  for (int root : {0, c.size() - 1}) {
    at::Tensor tensor =
        c.rank() == root ? make_tensor(k, k.shape, root, 0) : make_output(k, k.shape);
    c.broadcast(tensor, root)->wait();
    expect_tensor_eq(tensor, make_values(k.dtype, k.shape, root, 0),
                     at_rank("broadcast", c.rank()) + " from root " + std::to_string(root));
  }
}

void allgather(Communicator& c, const Case& k) {
  at::Tensor input = make_tensor(k, k.shape, c.rank(), 0);
  at::Tensor output = make_output(k, with_leading(c.size(), k.shape));
  c.allgather(input, output)->wait();
  std::vector<at::Tensor> rows;
  for (int q = 0; q < c.size(); ++q) rows.push_back(make_values(k.dtype, k.shape, q, 0));
  expect_tensor_eq(output, at::stack(rows), at_rank("allgather", c.rank()));
}

void reduce_scatter(Communicator& c, const Case& k) {
  const int r = c.rank(), n = c.size();
  const auto input_shape = with_leading(n, k.shape);
  const int64_t row_numel =
      std::accumulate(k.shape.begin(), k.shape.end(), int64_t{1}, std::multiplies<int64_t>());
  for (ReduceOp op : reduce_ops(k.dtype)) {
    const int salt = static_cast<int>(op);
    at::Tensor input = make_tensor(k, input_shape, r, salt);
    at::Tensor output = make_output(k, k.shape);
    c.reduce_scatter(input, output, op)->wait();
    // Row r of every rank's input: flat indices [r * row_numel, (r + 1) * row_numel).
    expect_tensor_eq(output, expected_reduction(k.dtype, k.shape, n, op, salt, r * row_numel),
                     at_rank(("reduce_scatter " + to_string(op)).c_str(), r));
  }
}

// Uneven splits: rank p sends ((p + 2q) % 3) * unit rows to rank q, some of them none.
void alltoall(Communicator& c, const Case& k) {
  const int r = c.rank(), n = c.size();
  const int64_t unit = k.shape[0] == 0 ? 0 : std::max<int64_t>(1, k.shape[0] / 4);
  const at::IntArrayRef row_shape = at::IntArrayRef(k.shape).slice(1);
  auto rows = [&](int from, int to) { return ((from + 2 * to) % 3) * unit; };
  auto sent_by = [&](int p) {
    std::vector<int64_t> splits(n);
    for (int q = 0; q < n; ++q) splits[q] = rows(p, q);
    return splits;
  };
  auto total = [](const std::vector<int64_t>& v) {
    return std::accumulate(v.begin(), v.end(), int64_t{0});
  };

  std::vector<int64_t> send_splits = sent_by(r), recv_splits(n);
  for (int q = 0; q < n; ++q) recv_splits[q] = rows(q, r);
  at::Tensor input = make_tensor(k, with_leading(total(send_splits), row_shape), r, 0);
  at::Tensor output = make_output(k, with_leading(total(recv_splits), row_shape));
  c.alltoall(input, output, send_splits, recv_splits)->wait();
  std::vector<at::Tensor> pieces;
  for (int q = 0; q < n; ++q) {
    auto splits = sent_by(q);
    int64_t offset = std::accumulate(splits.begin(), splits.begin() + r, int64_t{0});
    pieces.push_back(make_values(k.dtype, with_leading(total(splits), row_shape), q, 0)
                         .narrow(0, offset, splits[r]));
  }
  expect_tensor_eq(output, at::cat(pieces), at_rank("alltoall uneven", r));

  // Equal splits (empty split vectors): unit rows to every rank.
  at::Tensor even_input = make_tensor(k, with_leading(n * unit, row_shape), r, 1);
  at::Tensor even_output = make_output(k, with_leading(n * unit, row_shape));
  c.alltoall(even_input, even_output)->wait();
  pieces.clear();
  for (int q = 0; q < n; ++q) {
    pieces.push_back(
        make_values(k.dtype, with_leading(n * unit, row_shape), q, 1).narrow(0, r * unit, unit));
  }
  expect_tensor_eq(even_output, at::cat(pieces), at_rank("alltoall equal", r));
}

}  // namespace

TEST_P(CommunicatorOps, SendRecv) { run_op(send_recv); }
TEST_P(CommunicatorOps, IsendIrecv) { run_op(isend_irecv); }
TEST_P(CommunicatorOps, Allreduce) { run_op(allreduce); }
TEST_P(CommunicatorOps, Broadcast) { run_op(broadcast); }
TEST_P(CommunicatorOps, Allgather) { run_op(allgather); }
TEST_P(CommunicatorOps, ReduceScatter) { run_op(reduce_scatter); }
TEST_P(CommunicatorOps, Alltoall) { run_op(alltoall); }

// One line per backend of the registry (CommunicatorBackends.EveryAvailableBackendRunsTheSuites
// checks that none is missing); an unavailable backend instantiates nothing. The instance
// names prefix the test names: "Mpi..." is what --gtest_filter=Mpi* runs under mpirun.
// In-process on 2 and 4 threads, with 4 large tensors only in float: 4 ranks add little to
// 2 ranks there, and the single-process suite has to stay quick on a 2-core machine.
INSTANTIATE_TEST_SUITE_P(InProcess2, CommunicatorOps,
                         ::testing::ValuesIn(op_params(backend_jobs("inprocess", {2}), op_cases())),
                         op_test_name);
INSTANTIATE_TEST_SUITE_P(InProcess4, CommunicatorOps,
                         ::testing::ValuesIn(op_params(backend_jobs("inprocess", {4}),
                                                       quick_op_cases())),
                         op_test_name);
// Gloo on 2 threads of this process (tools/strata-run jobs use it between processes).
INSTANTIATE_TEST_SUITE_P(Gloo2, CommunicatorOps,
                         ::testing::ValuesIn(op_params(backend_jobs("gloo"), quick_op_cases())),
                         op_test_name);
INSTANTIATE_TEST_SUITE_P(Mpi, CommunicatorOps,
                         ::testing::ValuesIn(op_params(backend_jobs("mpi"), op_cases())),
                         op_test_name);
// On the GPUs of the mpirun job's ranks, in CUDA builds with NCCL.
INSTANTIATE_TEST_SUITE_P(MpiNccl, CommunicatorOps,
                         ::testing::ValuesIn(op_params(backend_jobs("nccl"), op_cases())),
                         op_test_name);

}  // namespace strata::parallel::testing
