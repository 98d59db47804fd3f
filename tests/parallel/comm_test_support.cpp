#include "comm_test_support.h"

#include <mpi.h>

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "strata/core/error.h"
#include "strata/parallel/comm/backend_registry.h"
#include "strata/parallel/comm/inprocess_communicator.h"

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

std::vector<Case> quick_op_cases() {
  std::vector<Case> cases;
  for (const Case& c : op_cases()) {
    if (c.dtype == at::kFloat || c.shape_name.find("large") == std::string::npos)
      cases.push_back(c);
  }
  return cases;
}

std::vector<OpParam> op_params(const std::vector<BackendJob>& jobs,
                               const std::vector<Case>& cases) {
  std::vector<OpParam> params;
  for (const BackendJob& job : jobs) {
    for (const Case& c : cases) params.emplace_back(job, c);
  }
  return params;
}

std::string op_test_name(const ::testing::TestParamInfo<OpParam>& info) {
  return case_name(std::get<1>(info.param)) + "_" + job_name(std::get<0>(info.param));
}

std::string job_test_name(const ::testing::TestParamInfo<BackendJob>& info) {
  return job_name(info.param);
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

// Where make_tensor and make_output put tensors: the device of the backend run_on runs.
thread_local at::Device tensor_device(at::kCPU);

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
  return lay_out(make_values(c.dtype, shape, rank, salt).to(tensor_device), c.layout);
}

at::Tensor make_output(const Case& c, at::IntArrayRef shape) {
  at::Tensor garbage = c.dtype == at::kBool ? at::ones(shape, at::kBool)
                                            : at::full(shape, 99, at::TensorOptions(c.dtype));
  return lay_out(garbage.to(tensor_device), c.layout);
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

void expect_tensor_eq(const at::Tensor& actual_anywhere, const at::Tensor& expected,
                      const std::string& what) {
  ASSERT_TRUE(actual_anywhere.defined()) << what;
  const at::Tensor actual = actual_anywhere.cpu();
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

namespace {

// Sets the calling thread's tensor_device for as long as it lives.
class DeviceScope {
 public:
  explicit DeviceScope(at::Device device) : previous_(tensor_device) { tensor_device = device; }
  ~DeviceScope() { tensor_device = previous_; }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  at::Device previous_;
};

// The rank on this host picks the device, as the backends' world factories do.
at::Device device_of(const CommunicatorBackend& backend, const Communicator& comm) {
  if (backend.device_type() == at::kCPU) return at::kCPU;
  const auto count = c10::impl::getDeviceGuardImpl(backend.device_type())->deviceCount();
  return at::Device(backend.device_type(), static_cast<c10::DeviceIndex>(comm.rank() % count));
}

// Runs `body` on each rank in a thread of its own; false when a rank raised. Such a rank
// aborts an in-process job, so that the others stop waiting for it; other backends' ranks
// give up after the timeout of their group.
bool run_threads(const CommunicatorBackend& backend, const ThreadGroup& ranks, const Body& body) {
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  for (size_t r = 0; r < ranks.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        DeviceScope scope(device_of(backend, *ranks[r]));
        body(*ranks[r]);
      } catch (const std::exception& error) {
        ok = false;
        ADD_FAILURE() << "rank " << r << " raised: " << error.what();
        if (auto* inprocess = dynamic_cast<InProcessCommunicator*>(ranks[r].get()))
          inprocess->abort(error.what());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return ok;
}

std::mutex instantiated_mutex;
std::set<std::string> instantiated;

}  // namespace

std::string job_name(const BackendJob& job) {
  if (job.world_size == 0) return job.backend;
  return job.backend + "_w" + std::to_string(job.world_size);
}

std::vector<BackendJob> backend_jobs(const std::string& backend,
                                     const std::vector<int>& thread_sizes) {
  {
    std::lock_guard<std::mutex> lock(instantiated_mutex);
    instantiated.insert(backend);
  }
  const CommunicatorBackend& found = communicator_backend(backend, false);
  if (!found.is_available()) return {};
  if (!found.make_threads()) return {{backend, 0}};
  std::vector<BackendJob> jobs;
  for (int size : thread_sizes) jobs.push_back({backend, size});
  return jobs;
}

std::vector<std::string> instantiated_backends() {
  std::lock_guard<std::mutex> lock(instantiated_mutex);
  return {instantiated.begin(), instantiated.end()};
}

void run_on(const BackendJob& job, const Body& body) {
  const CommunicatorBackend& backend = communicator_backend(job.backend);
  if (job.world_size > 0) {
    STRATA_CHECK(static_cast<bool>(backend.make_threads()), "backend \"", job.backend,
                 "\" world size: got ", job.world_size,
                 ", expected 0 (its ranks are processes, not threads)");
    // Made once: a Gloo group meets through a store, which takes a while. The tests run
    // one at a time.
    static std::map<std::string, ThreadGroup> groups;
    ThreadGroup& group = groups[job_name(job)];
    if (group.empty()) group = backend.make_threads()(job.world_size, std::chrono::seconds(60));
    // A failed test may leave messages or a broken job behind: the next one starts afresh.
    if (!run_threads(backend, group, body)) groups.erase(job_name(job));
    return;
  }
  static std::map<std::string, CommunicatorPtr> worlds;  // one per backend and process
  CommunicatorPtr& world = worlds[job.backend];
  if (!world) world = backend.make_world()(BackendContext());
  try {
    DeviceScope scope(device_of(backend, *world));
    body(*world);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "[rank %d] raised: %s\n", world->rank(), error.what());
    ADD_FAILURE() << "rank " << world->rank() << " raised: " << error.what();
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

void run_in_process(int world_size, const Body& body, std::chrono::milliseconds timeout) {
  const CommunicatorBackend& backend = communicator_backend("inprocess");
  run_threads(backend, backend.make_threads()(world_size, timeout), body);
}

void run_gloo(int world_size, const Body& body) { run_on({"gloo", world_size}, body); }

void run_mpi(const Body& body) { run_on({"mpi"}, body); }

}  // namespace strata::parallel::testing
