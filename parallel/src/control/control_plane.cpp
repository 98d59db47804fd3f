#include "strata/parallel/control/control_plane.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "strata/core/error.h"
#include "strata/core/fault_injection.h"
#include "strata/parallel/comm/backend_registry.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/comm/recording_communicator.h"

namespace strata::parallel {
namespace {

// How long a rank other than 0 that fails before the control plane waits for rank 0 to
// end the job (end_job_after_error): long enough for mpirun to kill it on a loaded
// machine, short enough not to matter when it alone failed.
constexpr std::chrono::milliseconds kOtherRanksErrorDelay{2000};

int env_int(const char* name, const char* value, int low, int high) {
  int parsed = -1;
  try {
    size_t used = 0;
    parsed = std::stoi(value, &used);
    if (used != std::string(value).size()) parsed = low - 1;
  } catch (const std::exception&) {
    parsed = low - 1;
  }
  STRATA_CHECK(parsed >= low && parsed <= high, name, ": got \"", value,
               "\", expected an integer in ", low, "..", high);
  return parsed;
}

bool started_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

// What every strata program did before backends had names: Gloo under strata-run, MPI
// otherwise (mpirun's variables win: a job started by mpirun is an MPI job).
std::string automatic_backend(const std::optional<LaunchEnvironment>& env) {
  if (!env || started_by_mpirun()) return "mpi";
  if (env->world_size == 1 && !gloo_available()) return "mpi";
  STRATA_CHECK(gloo_available(), "strata-run with ", env->world_size,
               " ranks needs the Gloo data plane, and strata was built without it "
               "(install libgloo-dev and rebuild), expected a Gloo build or mpirun");
  return "gloo";
}

}  // namespace

std::chrono::milliseconds ControlPlaneOptions::timeout_ms() const {
  return std::chrono::milliseconds(static_cast<int64_t>(timeout() * 1000.0));
}

std::chrono::milliseconds ControlPlaneOptions::heartbeat_interval() const {
  return std::clamp(timeout_ms() / 10, std::chrono::milliseconds(100),
                    std::chrono::milliseconds(1000));
}

std::optional<LaunchEnvironment> launch_environment() {
  const char* address = std::getenv("STRATA_STORE_ADDR");
  const char* rank = std::getenv("STRATA_RANK");
  const char* size = std::getenv("STRATA_WORLD_SIZE");
  if (!address && !rank && !size) return std::nullopt;
  STRATA_CHECK(
      address && rank && size,
      "strata-run environment: got only some of STRATA_RANK, "
      "STRATA_WORLD_SIZE and STRATA_STORE_ADDR, expected all three (start with tools/strata-run)");
  LaunchEnvironment env;
  env.world_size = env_int("STRATA_WORLD_SIZE", size, 1, 1 << 20);
  env.rank = env_int("STRATA_RANK", rank, 0, env.world_size - 1);
  env.store_address = address;
  parse_store_address(env.store_address);  // checks it
  return env;
}

CommunicatorPtr world_communicator(const std::string& backend) {
  std::string name = backend;
  if (name.empty()) {
    const char* env = std::getenv("STRATA_BACKEND");
    if (env) name = env;
  }
  static std::string made_by;
  static const CommunicatorPtr world = [&]() -> CommunicatorPtr {
    const auto env = launch_environment();
    made_by = name.empty() ? automatic_backend(env) : name;
    const CommunicatorBackend& chosen = communicator_backend(made_by);
    BackendContext context;
    if (env && !started_by_mpirun()) {
      context.rank = env->rank;
      context.world_size = env->world_size;
      context.store_address = env->store_address;
    }
    return record_operations(chosen.make_world()(context));
  }();
  STRATA_CHECK(name.empty() || name == made_by, "world communicator backend: got \"", name,
               "\", expected \"", made_by, "\" (the process's world was made with it)");
  return world;
}

namespace detail {

// What a ControlPlane holds, apart from the object: after a failure it outlives the
// ControlPlane (in `failed_parts`) until end_job_after_error uses it.
struct ControlPlaneParts {
  int rank = 0, world_size = 1;
  ControlPlaneOptions options;
  std::unique_ptr<ControlStoreServer> server;
  std::string address;
  std::shared_ptr<ControlStoreClient> store;  // for the program
  std::unique_ptr<Watchdog> watchdog;         // with a connection of its own
  bool finished = false;

  ~ControlPlaneParts() {
    try {
      finish();
    } catch (const std::exception& e) {
      spdlog::warn("control plane: {}", e.what());
    }
  }

  void finish() {
    if (finished || !store) return;  // no store: the constructor failed before it
    finished = true;
    if (watchdog) watchdog->stop();
    store->set("done/" + std::to_string(rank), "1");
    if (!server) return;
    // The store must outlive every rank's use of it.
    std::vector<std::string> keys;
    for (int r = 0; r < world_size; ++r) keys.push_back("done/" + std::to_string(r));
    store->wait(keys,
                options.timeout() > 0 ? options.timeout_ms() : std::chrono::milliseconds(60000));
  }
};

}  // namespace detail

namespace {

// The parts of the last ControlPlane an exception unwound, for end_job_after_error.
std::mutex failed_parts_mutex;
std::unique_ptr<detail::ControlPlaneParts> failed_parts;

std::unique_ptr<detail::ControlPlaneParts> swap_failed_parts(
    std::unique_ptr<detail::ControlPlaneParts> parts) {
  std::lock_guard<std::mutex> lock(failed_parts_mutex);
  std::swap(parts, failed_parts);
  return parts;
}

// The launcher stops the other processes of a failed job with SIGTERM; this one has
// said what it had to say by then.
void exit_quietly(int) { std::_Exit(kErrorExitCode); }

// Tells the job through `store` that this rank failed with `line` and ends the process;
// prints `line` when this rank is the first to fail (or the store cannot tell).
[[noreturn]] void leave_failed_job(ControlStoreClient& store, int rank, int world_size,
                                   std::chrono::milliseconds heartbeat, const std::string& line) {
  std::signal(SIGTERM, exit_quietly);
  bool printed = false;
  const auto print = [&] {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    printed = true;
  };
  try {
    post_error_abort(store, rank, line, print);
  } catch (const std::exception&) {
    // No store to agree through: one line too many beats none.
    if (!printed) print();
  }
  leave_after_error_abort(store, rank, world_size, /*wait=*/true, heartbeat);
  std::_Exit(kErrorExitCode);
}

}  // namespace

ControlPlane::ControlPlane(Communicator& world, const ControlPlaneOptions& options)
    : parts_(std::make_unique<detail::ControlPlaneParts>()),
      uncaught_exceptions_(std::uncaught_exceptions()) {
  detail::ControlPlaneParts& p = *parts_;
  p.rank = world.rank();
  p.world_size = world.size();
  p.options = options;
  STRATA_CHECK(options.timeout() >= 0, "--timeout: got ", options.timeout(),
               ", expected 0 or more seconds");
  if (const auto env = launch_environment(); env && !started_by_mpirun()) {
    p.address = env->store_address;
  } else {
    // Rank 0 hosts the store, on any free port, and tells the others: on loopback, unless
    // STRATA_STORE_HOST gives rank 0's address for a job across hosts (mpirun -x).
    const char* store_host = std::getenv("STRATA_STORE_HOST");
    const std::string host = store_host && *store_host ? store_host : "127.0.0.1";
    at::Tensor port = at::zeros({1}, at::kInt);
    if (p.rank == 0) {
      p.server = std::make_unique<ControlStoreServer>(ControlStoreServerOptions().host(host));
      port[0] = p.server->port();
    }
    if (p.world_size > 1) world.broadcast(port, 0)->wait();
    p.address = host + ":" + std::to_string(port.item<int>());
  }
  p.store = std::make_shared<ControlStoreClient>(p.address);
  if (options.timeout() > 0) {
    p.watchdog = std::make_unique<Watchdog>(std::make_shared<ControlStoreClient>(p.address), p.rank,
                                            p.world_size,
                                            WatchdogOptions()
                                                .timeout(options.timeout_ms())
                                                .heartbeat_interval(options.heartbeat_interval())
                                                .hang_report(options.hang_report())
                                                .hosts_store(p.server != nullptr)
                                                .straggler(options.straggler()));
  }
}

ControlPlane::~ControlPlane() {
  if (std::uncaught_exceptions() > uncaught_exceptions_ && parts_->world_size > 1 &&
      !parts_->finished) {
    // The program failed; the other ranks may be waiting for this one, so finish() would
    // wait for them in vain. An earlier failure's parts, if nobody used them, finish now.
    swap_failed_parts(std::move(parts_));
  }
}

void ControlPlane::finish() { parts_->finish(); }

ControlStoreClient& ControlPlane::store() { return *parts_->store; }

const std::string& ControlPlane::store_address() const { return parts_->address; }

bool ControlPlane::hosts_store() const { return parts_->server != nullptr; }

std::vector<StragglerReport> ControlPlane::take_straggler_reports() {
  return parts_->watchdog ? parts_->watchdog->take_straggler_reports()
                          : std::vector<StragglerReport>{};
}

void end_job_after_error(const std::string& line) {
  if (std::unique_ptr<detail::ControlPlaneParts> parts = swap_failed_parts(nullptr)) {
    // This rank's watchdog would take the abort for another rank's; it has nothing to add.
    if (parts->watchdog) parts->watchdog->stop();
    parts->finished = true;
    leave_failed_job(*parts->store, parts->rank, parts->world_size,
                     parts->options.heartbeat_interval(), line);
  }
  std::optional<LaunchEnvironment> env;
  try {
    env = launch_environment();
  } catch (const std::exception&) {
    // A malformed launch environment was the error itself, maybe: nobody to tell.
  }
  if (env && env->world_size > 1 && !started_by_mpirun()) {
    try {
      ControlStoreClient store(env->store_address, ControlStoreClientOptions()
                                                       .connect_timeout(std::chrono::seconds(2))
                                                       .io_timeout(std::chrono::seconds(2)));
      leave_failed_job(store, env->rank, env->world_size, std::chrono::milliseconds(100), line);
    } catch (const std::exception&) {
      // The launcher's store is gone: the launcher stops the others when this rank exits.
    }
  }
  if (started_by_mpirun() && core::launcher_rank() > 0) {
    // No store to agree through: the same bad flag fails every rank at once, and each
    // would print it. Rank 0 speaks for the job; when it fails too, mpirun ends this rank
    // during the wait (rank 0 exits non-zero or calls MPI_Abort), so the line appears
    // once. A rank that fails alone still prints, a moment later.
    std::this_thread::sleep_for(kOtherRanksErrorDelay);
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  abort_mpi_job(kErrorExitCode);
}

}  // namespace strata::parallel
