// What only the MPI backend has: one world per process, and communicators over MPI
// communicators of the program's own. Runs under mpirun (suite names start with Mpi).
#include <mpi.h>

#include "comm_test_support.h"
#include "strata/parallel/comm/mpi_communicator.h"

namespace strata::parallel::testing {
namespace {

TEST(MpiCommunicator, WorldIsTheJob) {
  auto world = MpiCommunicator::world();
  EXPECT_EQ(world, MpiCommunicator::world());
  EXPECT_EQ(world->backend(), "mpi");
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(world->rank(), rank);
  EXPECT_EQ(world->size(), size);
  EXPECT_GE(size, 2) << "run the Mpi suites under mpirun -np 2 or more";
  EXPECT_NE(world->comm(), MPI_COMM_WORLD);  // a duplicate: our traffic never meets yours
}

TEST(MpiCommunicator, FromComm) {
  auto comm = MpiCommunicator::from_comm(MPI_COMM_WORLD);
  at::Tensor t = at::full({2}, comm->rank(), at::kLong);
  comm->allreduce(t, ReduceOp::Max)->wait();
  expect_tensor_eq(t, at::full({2}, comm->size() - 1, at::kLong), "allreduce max");
}

TEST(MpiCommunicator, RejectsNonCpuTensorsAndUnsupportedDtypes) {
  auto world = MpiCommunicator::world();
  at::Tensor quantized = at::quantize_per_tensor(at::ones({2}), 0.1, 0, at::kQInt8);
  expect_error([&] { world->allreduce(quantized); }, "mpi backend dtype: got QInt8");
}

TEST(MpiCommunicator, CountsAboveIntMaxRaise) {
  auto world = MpiCommunicator::world();
  // 2^31 elements without the memory: one element seen through a zero stride.
  at::Tensor huge = at::zeros({1}, at::kBool).expand({int64_t{1} << 31});
  expect_error([&] { world->allreduce(huge); },
               "mpi allreduce tensor: got 2147483648 elements, expected at most 2147483647");
  expect_error([&] { world->isend(huge, 0); }, "mpi isend tensor: got 2147483648 elements");
  at::Tensor output = at::zeros({1}, at::kBool).expand({world->size(), int64_t{1} << 31});
  expect_error([&] { world->allgather(huge, output); }, "mpi allgather input: got 2147483648");
}

}  // namespace
}  // namespace strata::parallel::testing
