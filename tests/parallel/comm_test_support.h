#pragma once
// What the communicator tests share: cases (dtype, shape, memory layout), exact
// rank-dependent data, and harnesses that run one test body on every rank of any backend of
// the registry (threads of this process, or the ranks of the mpirun job).
//
// A body is a function of (Communicator&, ...) that every rank runs; it computes what the
// other ranks hold from their rank numbers, so every expected value is exact.

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <tuple>
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
// make_values laid out in memory as `layout` says (a copy that is not contiguous), on the
// device of the backend that run_on runs.
at::Tensor make_tensor(const Case& c, at::IntArrayRef shape, int rank, int salt);
// An output tensor with `c`'s layout, filled with values no operation produces by chance.
at::Tensor make_output(const Case& c, at::IntArrayRef shape);
// The reduction over ranks 0..size-1 of make_values(dtype, shape, q, salt, offset),
// computed in float and cast back: exact for these values.
at::Tensor expected_reduction(at::ScalarType dtype, at::IntArrayRef shape, int size, ReduceOp op,
                              int salt, int64_t offset = 0);
// The ops that apply to a dtype (Avg only for floating ones).
std::vector<ReduceOp> reduce_ops(at::ScalarType dtype);

// EXPECTs same shape, dtype and values (compared in double, on the CPU), naming the first
// mismatch.
void expect_tensor_eq(const at::Tensor& actual, const at::Tensor& expected,
                      const std::string& what);

// EXPECTs that `body` raises strata::Error whose message contains `needle`.
void expect_error(const std::function<void()>& body, const std::string& needle);

using Body = std::function<void(Communicator&)>;

// Where a shared suite runs: a backend of the registry (comm/backend_registry.h) and a world
// size, or world size 0 for a backend whose ranks are the processes of this job (mpi,
// nccl: such suites' instantiation names start with "Mpi", so that they run under mpirun).
struct BackendJob {
  std::string backend;
  int world_size = 0;
};
// "inprocess_w2", "mpi".
std::string job_name(const BackendJob& job);
// The jobs of `backend`: one for each of `thread_sizes` when the backend makes ranks as
// threads, else one on the processes of the job; none when the backend is not available
// here. For INSTANTIATE_TEST_SUITE_P; every backend asked for is remembered.
std::vector<BackendJob> backend_jobs(const std::string& backend,
                                     const std::vector<int>& thread_sizes = {2});
// The backends backend_jobs() was asked for (all of them, once gtest has set up its tests).
std::vector<std::string> instantiated_backends();

// The shared suites, which every backend runs: CommunicatorOps (test_communicator_ops.cpp,
// every operation on every case) and CommunicatorSemantics (test_communicator_semantics.cpp).
// A backend joins them with one INSTANTIATE_TEST_SUITE_P line each, as
//   INSTANTIATE_TEST_SUITE_P(Gloo, CommunicatorOps,
//                            ::testing::ValuesIn(op_params(backend_jobs("gloo"), op_cases())),
//                            op_test_name);
//   INSTANTIATE_TEST_SUITE_P(Gloo, CommunicatorSemantics,
//                            ::testing::ValuesIn(backend_jobs("gloo")), job_test_name);
using OpParam = std::tuple<BackendJob, Case>;
class CommunicatorOps : public ::testing::TestWithParam<OpParam> {};
class CommunicatorSemantics : public ::testing::TestWithParam<BackendJob> {};
// Every case on every job.
std::vector<OpParam> op_params(const std::vector<BackendJob>& jobs, const std::vector<Case>& cases);
// op_cases() with large tensors only in float: for more ranks or slower backends, where the
// large cases of other dtypes add little and the single-process suite has to stay quick.
std::vector<Case> quick_op_cases();
std::string op_test_name(const ::testing::TestParamInfo<OpParam>& info);
std::string job_test_name(const ::testing::TestParamInfo<BackendJob>& info);

// Runs `body` on every rank of `job`: as threads of a group the backend makes (once per
// backend and size, and again after a test failed on it), or on this rank of the job's
// world. Tensors made by make_tensor and make_output are on the backend's device. An
// exception that escapes a rank fails the test; in a job of processes it aborts the job
// (the other ranks could wait for this one forever).
void run_on(const BackendJob& job, const Body& body);
// Runs `body` on `world_size` threads, one communicator each. An exception that escapes a
// rank fails the test and aborts the job, so that the other ranks stop waiting.
void run_in_process(int world_size, const Body& body,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60));
// run_on({"gloo", world_size}): a Gloo group of threads. Call it only where gloo_available().
void run_gloo(int world_size, const Body& body);
// run_on({"mpi"}): this rank of MpiCommunicator::world().
void run_mpi(const Body& body);

}  // namespace strata::parallel::testing

// For workloads over communicators (process grid, expert parallelism): defines test `name`
// twice from one body, InProcess<suite>.name on 2 and 4 threads and Mpi<suite>.name on every
// rank of the mpirun job. The communicator suites themselves run on every backend (above).
#define STRATA_COMM_TEST(suite, name, body)                          \
  TEST(InProcess##suite, name) {                                     \
    for (int world_size : {2, 4}) {                                  \
      SCOPED_TRACE("world size " + std::to_string(world_size));      \
      ::strata::parallel::testing::run_in_process(world_size, body); \
    }                                                                \
  }                                                                  \
  TEST(Mpi##suite, name) { ::strata::parallel::testing::run_mpi(body); }
