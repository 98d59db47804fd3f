#pragma once
// How a strata program joins its job: the data plane (world_communicator) and the control
// plane (the rendezvous store and the heartbeat watchdog), and the options that steer them
// (programs bind --timeout and --hang-report to them: strata/programs/reliability_flags.h).
//
//   auto world = strata::parallel::world_communicator(backend);  // operations recorded
//   strata::parallel::ControlPlane control(*world, options);  // store + watchdog (collective)
//   ... training ...
//   control.finish();                                       // or let the destructor do it
//
// Jobs start two ways:
// - under mpirun: the data plane is MPI; rank 0 starts the control store on loopback
//   (any free port) and broadcasts its address to the other ranks over MPI;
// - under tools/strata-run: every rank finds STRATA_RANK, STRATA_WORLD_SIZE and
//   STRATA_STORE_ADDR (the store, which strata-run hosts) in its environment; the data
//   plane is Gloo (c10d's ProcessGroupGloo, rendezvous through the store) when strata was
//   built with it.
// A program started alone is a world of one (MPI singleton). --backend NAME (or
// STRATA_BACKEND=NAME) picks another backend of comm/backend_registry.h instead.
//
// One rank's error ends the whole job at once: when an exception leaves the scope of a
// ControlPlane (the program failed), the control plane does not wait for the other ranks;
// end_job_after_error (strata::programs::run_main calls it) prints the error's one line
// once for the job, tells every rank through the store and ends this process. See
// docs/reliability.md, "When a rank fails with an error".

#include <torch/arg.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "strata/parallel/comm/communicator.h"
#include "strata/parallel/control/control_store.h"
#include "strata/parallel/control/watchdog.h"

namespace strata::parallel {

struct ControlPlaneOptions {
  // One tenth of the timeout, between 0.1 s and 1 s.
  std::chrono::milliseconds heartbeat_interval() const;
  std::chrono::milliseconds timeout_ms() const;

  // Seconds a rank may wait in one operation or go without a heartbeat before the watchdog
  // aborts the job with a report; 0 disables the watchdog.
  TORCH_ARG(double, timeout) = 300;
  // Where the rank that detects a hang writes its report as JSON (empty: nowhere).
  TORCH_ARG(std::string, hang_report) = "";
  // When rank 0 reports a straggler (with the watchdog only): see control/straggler.h.
  TORCH_ARG(StragglerOptions, straggler) = {};
};

// The environment strata-run gives each rank; nullopt when the variables are not set.
// Malformed values raise strata::Error naming the variable.
struct LaunchEnvironment {
  int rank = 0;
  int world_size = 1;
  std::string store_address;  // host:port
};
std::optional<LaunchEnvironment> launch_environment();

// True when Gloo (c10d::ProcessGroupGloo) was found at build time.
bool gloo_available();

// The job's world, wrapped by record_operations, from the backend (comm/backend_registry.h)
// named by `backend`, else by the STRATA_BACKEND environment variable, else chosen as
// always: Gloo under strata-run (STRATA_STORE_ADDR set), MPI otherwise. Raises
// strata::Error for an unknown or unavailable name, and under strata-run with more than one
// rank when the automatic choice is Gloo and strata was built without it. Makes the world
// on the first call and returns it on every later one (whose backend must not differ).
CommunicatorPtr world_communicator(const std::string& backend = "");

namespace detail {
struct ControlPlaneParts;
}

class ControlPlane {
 public:
  // Connects this rank to the job's store (starting it on rank 0 under mpirun) and, when
  // options.timeout() > 0, starts the watchdog. Collective over `world`.
  ControlPlane(Communicator& world, const ControlPlaneOptions& options);
  // finish(); but when an exception is unwinding through it in a job of several ranks, it
  // keeps the store (and its server) and the watchdog running for end_job_after_error,
  // without waiting for the other ranks, who may wait for this one.
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Stops this rank's watchdog (marking it done), and on the rank hosting the store waits
  // (up to the timeout) for every rank to be done before the store goes. Idempotent.
  void finish();

  ControlStoreClient& store();
  const std::string& store_address() const;
  bool hosts_store() const;
  // On rank 0: the stragglers the watchdog confirmed since the last call (none without
  // a watchdog).
  std::vector<StragglerReport> take_straggler_reports();

 private:
  std::unique_ptr<detail::ControlPlaneParts> parts_;
  int uncaught_exceptions_;  // at construction: more at destruction means unwinding
};

// Says that this process failed with `line` (one line, "error: ..."), on stderr, and when
// the process is a rank of a job of more than one rank, ends the job and does not return:
// - after a ControlPlane was unwound (the usual case): post_error_abort on its store, so
//   that `line` is printed once for the job (by the first rank to fail; a rank that fails
//   at the same time stays silent) and every other rank's watchdog ends its process within
//   a heartbeat, without a hang report; the rank hosting the store stays until they have
//   left (a few heartbeats at most);
// - before any control plane, under strata-run: the same through the launcher's store;
// - before any control plane, under mpirun (a bad flag fails every rank before MPI
//   exists): rank 0 prints `line` and ends the job (MPI_Abort, or its non-zero exit); any
//   other rank first waits two seconds, in which rank 0's end takes it too, so the line
//   appears once; a rank that fails alone prints after the wait.
// This process then exits with kErrorExitCode (1), without MPI_Finalize or destructors,
// which would wait for the other ranks. In a job of one rank it prints `line` and returns.
void end_job_after_error(const std::string& line);

}  // namespace strata::parallel
