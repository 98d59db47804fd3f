#include "strata/parallel/control/control_plane.h"

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "strata/core/error.h"
#include "strata/parallel/comm/backend_registry.h"
#include "strata/parallel/comm/recording_communicator.h"

namespace strata::parallel {
namespace {

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

ControlPlane::ControlPlane(Communicator& world, const ControlPlaneOptions& options)
    : rank_(world.rank()), world_size_(world.size()), options_(options) {
  STRATA_CHECK(options.timeout() >= 0, "--timeout: got ", options.timeout(),
               ", expected 0 or more seconds");
  if (const auto env = launch_environment(); env && !started_by_mpirun()) {
    address_ = env->store_address;
  } else {
    // Rank 0 hosts the store on loopback, on any free port, and tells the others.
    at::Tensor port = at::zeros({1}, at::kInt);
    if (rank_ == 0) {
      server_ = std::make_unique<ControlStoreServer>();
      port[0] = server_->port();
    }
    if (world_size_ > 1) world.broadcast(port, 0)->wait();
    address_ = "127.0.0.1:" + std::to_string(port.item<int>());
  }
  store_ = std::make_shared<ControlStoreClient>(address_);
  if (options.timeout() > 0) {
    watchdog_ = std::make_unique<Watchdog>(std::make_shared<ControlStoreClient>(address_), rank_,
                                           world_size_,
                                           WatchdogOptions()
                                               .timeout(options.timeout_ms())
                                               .heartbeat_interval(options.heartbeat_interval())
                                               .hang_report(options.hang_report()));
  }
}

ControlPlane::~ControlPlane() {
  try {
    finish();
  } catch (const std::exception& e) {
    spdlog::warn("control plane: {}", e.what());
  }
}

void ControlPlane::finish() {
  if (finished_) return;
  finished_ = true;
  if (watchdog_) watchdog_->stop();
  store_->set("done/" + std::to_string(rank_), "1");
  if (!server_) return;
  // The store must outlive every rank's use of it.
  std::vector<std::string> keys;
  for (int r = 0; r < world_size_; ++r) keys.push_back("done/" + std::to_string(r));
  store_->wait(keys,
               options_.timeout() > 0 ? options_.timeout_ms() : std::chrono::milliseconds(60000));
}

}  // namespace strata::parallel
