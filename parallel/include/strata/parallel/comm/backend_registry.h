#pragma once
// Communicator backends by name, as c10d's backend registry: "mpi", "gloo", "nccl" and
// "inprocess" are built in, and a program or test may add its own. world_communicator()
// (control/control_plane.h) makes the job's world with the backend that --backend or
// STRATA_BACKEND names, and the shared communicator tests run on every available one.
//
//   strata::parallel::register_backend(
//       strata::parallel::CommunicatorBackend()
//           .name("mine")
//           .make_world([](const strata::parallel::BackendContext& context) { ... }));
//   auto world = strata::parallel::world_communicator("mine");

#include <c10/core/DeviceType.h>
#include <torch/arg.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// What a backend gets to make the world communicator of a job. Under tools/strata-run the
// launcher's environment fills it (launch_environment() in control/control_plane.h); under
// mpirun, or for a program started alone, it keeps its defaults and store_address is empty.
struct BackendContext {
  int rank = 0;
  int world_size = 1;
  std::string store_address;  // host:port of the job's control store; empty when none
};

// `size` ranks inside this process, one communicator for each thread.
using ThreadGroup = std::vector<CommunicatorPtr>;

struct CommunicatorBackend {
  // available(), or true when it is unset.
  bool is_available() const { return !available_ || available_(); }

  // What --backend and STRATA_BACKEND say.
  TORCH_ARG(std::string, name);
  // What an unavailable backend lacks, for the error that names it ("a build with Gloo").
  TORCH_ARG(std::string, requirement);
  // Whether the backend is built in and usable in this process; unset: always.
  TORCH_ARG(std::function<bool()>, available);
  // The world communicator of this process's job: one call per process.
  TORCH_ARG(std::function<CommunicatorPtr(const BackendContext&)>, make_world);
  // `size` ranks as threads of this process, whose operations give up after `timeout` where
  // the backend can (tests, single-process runs); unset for backends whose ranks must be
  // processes (mpi, nccl).
  TORCH_ARG(std::function<ThreadGroup(int size, std::chrono::milliseconds timeout)>, make_threads);
  // The device of the tensors the backend's operations take.
  TORCH_ARG(c10::DeviceType, device_type) = c10::DeviceType::CPU;
};

// Adds `backend`; raises strata::Error when its name is empty or taken, or it has no
// make_world. Returns true, so that a source file can register at static initialization:
//   static const bool registered = strata::parallel::register_backend(...);
bool register_backend(CommunicatorBackend backend);

// Every registered name, built-in ones first, in registration order.
std::vector<std::string> registered_backends();
// The registered names whose available() is true in this process.
std::vector<std::string> available_backends();

// The backend called `name`; raises strata::Error, listing the registered and the available
// names, when there is none or (with `must_be_available`) it is not available here.
const CommunicatorBackend& communicator_backend(const std::string& name,
                                                bool must_be_available = true);

}  // namespace strata::parallel
