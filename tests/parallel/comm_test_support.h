#pragma once
// What the communicator tests share: cases (dtype, shape, memory layout), exact
// rank-dependent data, and harnesses that run one test body on every rank of either backend
// (threads of an in-process job, or the ranks of the mpirun job).
//
// A body is a function of (Communicator&, ...) that every rank runs; it computes what the
// other ranks hold from their rank numbers, so every expected value is exact.

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel::testing {

enum class Layout { Contiguous, Transposed, Strided };

struct Case {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  Layout layout;
  std::string shape_name;  // for test names
};

// Every op runs on each of these: the dtypes float, double, half, int64 and bool on empty,
// one-element, large (1 << 20) and non-contiguous (transposed, strided) tensors, and the
// other dtypes on one non-contiguous shape.
std::vector<Case> op_cases();
std::string case_name(const Case& c);

// Small integers (exact in every dtype, also when 4 ranks add them up), or for bool a
// pattern whose "any" and "all" over ranks both vary; the element at flat index i of the
// full tensor is a function of (i + offset, rank, salt).
at::Tensor make_values(at::ScalarType dtype, at::IntArrayRef shape, int rank, int salt,
                       int64_t offset = 0);
// make_values laid out in memory as `layout` says (a copy that is not contiguous).
at::Tensor make_tensor(const Case& c, at::IntArrayRef shape, int rank, int salt);
// An output tensor with `c`'s layout, filled with values no operation produces by chance.
at::Tensor make_output(const Case& c, at::IntArrayRef shape);
// The reduction over ranks 0..size-1 of make_values(dtype, shape, q, salt, offset),
// computed in float and cast back: exact for these values.
at::Tensor expected_reduction(at::ScalarType dtype, at::IntArrayRef shape, int size, ReduceOp op,
                              int salt, int64_t offset = 0);
// The ops that apply to a dtype (Avg only for floating ones).
std::vector<ReduceOp> reduce_ops(at::ScalarType dtype);

// EXPECTs same shape, dtype and values (compared in double), naming the first mismatch.
void expect_tensor_eq(const at::Tensor& actual, const at::Tensor& expected,
                      const std::string& what);

// EXPECTs that `body` raises strata::Error whose message contains `needle`.
void expect_error(const std::function<void()>& body, const std::string& needle);

using Body = std::function<void(Communicator&)>;
// Runs `body` on `world_size` threads, one communicator each. An exception that escapes a
// rank fails the test and aborts the job, so that the other ranks stop waiting.
void run_in_process(int world_size, const Body& body,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60));
// Runs `body` on `world_size` threads, each with a GlooCommunicator of one Gloo group
// (meeting through a control store of this process). The groups are made once per world
// size and reused by every later call. Call it only where gloo_available().
void run_gloo(int world_size, const Body& body);
// Runs `body` on this rank of MpiCommunicator::world(). An exception that escapes fails
// the test and aborts the MPI job (the other ranks could wait for this one forever).
void run_mpi(const Body& body);

}  // namespace strata::parallel::testing

// Defines test `name` twice from one body: InProcess<suite>.name runs it on 2 and 4
// threads, Mpi<suite>.name on every rank of the mpirun job.
#define STRATA_COMM_TEST(suite, name, body)                          \
  TEST(InProcess##suite, name) {                                     \
    for (int world_size : {2, 4}) {                                  \
      SCOPED_TRACE("world size " + std::to_string(world_size));      \
      ::strata::parallel::testing::run_in_process(world_size, body); \
    }                                                                \
  }                                                                  \
  TEST(Mpi##suite, name) { ::strata::parallel::testing::run_mpi(body); }
