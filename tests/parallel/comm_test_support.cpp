#include "comm_test_support.h"

#include <mpi.h>

#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <thread>

#include "strata/core/error.h"
#include "strata/parallel/comm/gloo_communicator.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/control/control_store.h"

namespace strata::parallel::testing {

std::vector<Case> op_cases() {
  const std::vector<Case> shapes = {
      {at::kFloat, {0}, Layout::Contiguous, "empty"},
      {at::kFloat, {1}, Layout::Contiguous, "one"},
      {at::kFloat, {1 << 20}, Layout::Contiguous, "large"},
      {at::kFloat, {33, 17}, Layout::Transposed, "transposed"},
      {at::kFloat, {8, 9}, Layout::Strided, "strided"},
  };
  std::vector<Case> cases;
  for (auto dtype : {at::kFloat, at::kDouble, at::kHalf, at::kLong, at::kBool}) {
    for (Case c : shapes) {
      c.dtype = dtype;
      cases.push_back(c);
    }
  }
  cases.push_back({at::kFloat, {1024, 1024}, Layout::Transposed, "large_transposed"});
  for (auto dtype : {at::kBFloat16, at::kInt, at::kShort, at::kChar, at::kByte}) {
    cases.push_back({dtype, {33, 17}, Layout::Transposed, "transposed"});
  }
  return cases;
}

std::string case_name(const Case& c) {
  return std::string(c10::toString(c.dtype)) + "_" + c.shape_name;
}

at::Tensor make_values(at::ScalarType dtype, at::IntArrayRef shape, int rank, int salt,
                       int64_t offset) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  // In place and in int32, which holds every index the tests use: large cases allocate a
  // lot, and the tests should measure the communicators, not the page faults.
  at::Tensor values = at::arange(offset, offset + numel, at::kInt);
  if (dtype == at::kBool) {
    // Bit `rank` of (index + salt): with n ranks "all" is true for 1 index in 2^n.
    values.add_(salt).bitwise_and_(1 << (rank % 16));
    return values.ne(0).reshape(shape);
  }
  // In [0, 23): sums over 4 ranks stay below 127 (int8) and 256 (exact in bfloat16).
  values.mul_(7).add_(rank * 5 + salt * 3).remainder_(23);
  return values.to(dtype).reshape(shape);
}

namespace {

at::Tensor lay_out(const at::Tensor& values, Layout layout) {
  if (layout == Layout::Transposed && values.dim() >= 2) {
    auto sizes = values.sizes().vec();
    std::swap(sizes[sizes.size() - 1], sizes[sizes.size() - 2]);
    return at::empty(sizes, values.options()).transpose(-1, -2).copy_(values);
  }
  if (layout != Layout::Contiguous && values.dim() >= 1) {
    auto sizes = values.sizes().vec();
    sizes.back() *= 2;
    return at::empty(sizes, values.options()).slice(-1, 0, sizes.back(), 2).copy_(values);
  }
  return values.clone();
}

}  // namespace

at::Tensor make_tensor(const Case& c, at::IntArrayRef shape, int rank, int salt) {
  return lay_out(make_values(c.dtype, shape, rank, salt), c.layout);
}

at::Tensor make_output(const Case& c, at::IntArrayRef shape) {
  at::Tensor garbage = c.dtype == at::kBool ? at::ones(shape, at::kBool)
                                            : at::full(shape, 99, at::TensorOptions(c.dtype));
  return lay_out(garbage, c.layout);
}

at::Tensor expected_reduction(at::ScalarType dtype, at::IntArrayRef shape, int size, ReduceOp op,
                              int salt, int64_t offset) {
  // In float: exact for these small integers, and half the memory of double.
  at::Tensor result = make_values(dtype, shape, 0, salt, offset).to(at::kFloat);
  for (int q = 1; q < size; ++q) {
    at::Tensor part = make_values(dtype, shape, q, salt, offset).to(at::kFloat);
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Avg: result.add_(part); break;
      case ReduceOp::Max: at::maximum_out(result, result, part); break;
      case ReduceOp::Min: at::minimum_out(result, result, part); break;
    }
  }
  // The sum is exact; the division by a world size that is not a power of two is not, so
  // it is done in the result's own precision (in float a double average would be off).
  if (op == ReduceOp::Avg) return result.to(dtype).div_(size);
  return result.to(dtype);  // bool: a non-zero sum is "any"
}

std::vector<ReduceOp> reduce_ops(at::ScalarType dtype) {
  if (at::isFloatingType(dtype))
    return {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max, ReduceOp::Min};
  return {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min};
}

void expect_tensor_eq(const at::Tensor& actual, const at::Tensor& expected,
                      const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what;
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  if (actual.scalar_type() == expected.scalar_type() &&
      at::equal(actual.contiguous(), expected.contiguous())) {
    return;
  }
  at::Tensor a = actual.to(at::kDouble).reshape(-1);
  at::Tensor e = expected.to(at::kDouble).reshape(-1);
  at::Tensor differ = a.ne(e);
  if (differ.any().item<bool>()) {
    int64_t i = differ.nonzero()[0][0].item<int64_t>();
    ADD_FAILURE() << what << ": " << differ.sum().item<int64_t>() << " of " << a.numel()
                  << " elements differ; first at flat index " << i << ": got "
                  << a[i].item<double>() << ", expected " << e[i].item<double>();
  }
}

void expect_error(const std::function<void()>& body, const std::string& needle) {
  try {
    body();
    ADD_FAILURE() << "expected strata::Error containing \"" << needle << "\", got no error";
  } catch (const strata::Error& error) {
    EXPECT_NE(std::string(error.what()).find(needle), std::string::npos)
        << "message: " << error.what() << "\nexpected to contain: " << needle;
  }
}

void run_in_process(int world_size, const Body& body, std::chrono::milliseconds timeout) {
  auto communicators = InProcessCommunicator::create(world_size, timeout);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(*communicators[r]);
      } catch (const std::exception& error) {
        ADD_FAILURE() << "rank " << r << " raised: " << error.what();
        communicators[r]->abort(error.what());
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

void run_gloo(int world_size, const Body& body) {
  struct Job {
    std::unique_ptr<ControlStoreServer> server;
    std::vector<std::shared_ptr<Communicator>> ranks;
  };
  static std::map<int, Job> jobs;  // by world size; the tests run one at a time
  Job& job = jobs[world_size];
  if (job.ranks.empty()) {
    job.server = std::make_unique<ControlStoreServer>();
    job.ranks.resize(static_cast<size_t>(world_size));
    std::vector<std::thread> joining;
    for (int r = 0; r < world_size; ++r) {
      joining.emplace_back([&, r] {
        auto store = std::make_shared<ControlStoreClient>(job.server->address());
        // A failing rank leaves the others waiting: a short timeout ends the test instead.
        job.ranks[static_cast<size_t>(r)] =
            GlooCommunicator::create(store, r, world_size, "test", std::chrono::seconds(20));
      });
    }
    for (auto& thread : joining) thread.join();
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(*job.ranks[static_cast<size_t>(r)]);
      } catch (const std::exception& error) {
        ADD_FAILURE() << "rank " << r << " raised: " << error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

void run_mpi(const Body& body) {
  auto world = MpiCommunicator::world();
  try {
    body(*world);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "[rank %d] raised: %s\n", world->rank(), error.what());
    ADD_FAILURE() << "rank " << world->rank() << " raised: " << error.what();
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

}  // namespace strata::parallel::testing
