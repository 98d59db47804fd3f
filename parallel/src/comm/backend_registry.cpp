#include "strata/parallel/comm/backend_registry.h"

#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "strata/core/error.h"
#include "strata/parallel/comm/gloo_communicator.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/comm/nccl_communicator.h"
#include "strata/parallel/control/control_plane.h"
#include "strata/parallel/control/control_store.h"

namespace strata::parallel {
namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none" : out;
}

// A process that strata-run started is one rank of a job of context.world_size; a
// backend whose world is something else would leave the others waiting.
void check_world_size(const char* backend, int size, const BackendContext& context) {
  STRATA_CHECK(context.world_size == size, backend, " backend world size: got ", size,
               ", expected ", context.world_size,
               " (the ranks strata-run started; start the job with mpirun for MPI)");
}

CommunicatorPtr mpi_world(const BackendContext& context) {
  auto world = MpiCommunicator::world();
  if (!context.store_address.empty()) check_world_size("mpi", world->size(), context);
  return world;
}

CommunicatorPtr gloo_world(const BackendContext& context) {
  STRATA_CHECK(!context.store_address.empty(),
               "gloo backend: got no control store address, expected a job started by "
               "tools/strata-run (STRATA_STORE_ADDR)");
  auto client = std::make_shared<ControlStoreClient>(context.store_address);
  return GlooCommunicator::create(client, context.rank, context.world_size, "world");
}

// The ranks meet through a store of their own, which lives as long as any of them.
ThreadGroup gloo_threads(int size, std::chrono::milliseconds timeout) {
  auto server = std::make_shared<ControlStoreServer>();
  std::vector<std::shared_ptr<GlooCommunicator>> ranks(static_cast<size_t>(size));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(size));
  std::vector<std::thread> joining;
  for (int r = 0; r < size; ++r) {
    joining.emplace_back([&, r] {
      try {
        auto store = std::make_shared<ControlStoreClient>(server->address());
        ranks[static_cast<size_t>(r)] =
            GlooCommunicator::create(store, r, size, "threads", timeout);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& thread : joining) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  struct Rank {
    std::shared_ptr<ControlStoreServer> server;
    std::shared_ptr<GlooCommunicator> comm;
  };
  ThreadGroup group;
  for (auto& comm : ranks) {
    auto rank = std::make_shared<Rank>(Rank{server, comm});
    group.push_back(CommunicatorPtr(rank, rank->comm.get()));
  }
  return group;
}

// In-process ranks are threads: the world of a process is a world of one.
CommunicatorPtr inprocess_world(const BackendContext& context) {
  check_world_size("inprocess", 1, context);
  return InProcessCommunicator::create(1).front();
}

ThreadGroup inprocess_threads(int size, std::chrono::milliseconds timeout) {
  auto ranks = InProcessCommunicator::create(size, timeout);
  return {ranks.begin(), ranks.end()};
}

bool nccl_available() {
#ifdef STRATA_WITH_NCCL
  return true;
#else
  return false;
#endif
}

CommunicatorPtr nccl_world(const BackendContext& context) {
#ifdef STRATA_WITH_NCCL
  return NcclCommunicator::create_world(context);
#else
  (void)context;
  STRATA_FAIL("nccl backend: strata was built without NCCL, expected a CUDA build with NCCL");
#endif
}

struct Registry {
  std::mutex mutex;
  // A deque: registering another backend leaves references to the others valid.
  std::deque<CommunicatorBackend> backends;

  Registry() {
    backends.push_back(CommunicatorBackend().name("mpi").make_world(mpi_world));
    backends.push_back(CommunicatorBackend()
                           .name("gloo")
                           .requirement("a build with Gloo (libgloo-dev)")
                           .available(gloo_available)
                           .make_world(gloo_world)
                           .make_threads(gloo_threads));
    backends.push_back(CommunicatorBackend()
                           .name("nccl")
                           .requirement("a build with CUDA LibTorch and NCCL")
                           .available(nccl_available)
                           .make_world(nccl_world)
                           .device_type(c10::DeviceType::CUDA));
    backends.push_back(CommunicatorBackend()
                           .name("inprocess")
                           .make_world(inprocess_world)
                           .make_threads(inprocess_threads));
  }

  std::vector<std::string> names(bool only_available) {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<std::string> out;
    for (const auto& backend : backends) {
      if (!only_available || backend.is_available()) out.push_back(backend.name());
    }
    return out;
  }
};

Registry& registry() {
  static Registry instance;
  return instance;
}

}  // namespace

bool register_backend(CommunicatorBackend backend) {
  STRATA_CHECK(!backend.name().empty(), "communicator backend name: got \"\", expected a name");
  STRATA_CHECK(static_cast<bool>(backend.make_world()), "communicator backend \"", backend.name(),
               "\": got no make_world, expected a factory of the job's world");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (const auto& existing : r.backends) {
    STRATA_CHECK(existing.name() != backend.name(), "communicator backend \"", backend.name(),
                 "\": registered twice, expected a new name");
  }
  r.backends.push_back(std::move(backend));
  return true;
}

std::vector<std::string> registered_backends() { return registry().names(false); }

std::vector<std::string> available_backends() { return registry().names(true); }

const CommunicatorBackend& communicator_backend(const std::string& name, bool must_be_available) {
  Registry& r = registry();
  const CommunicatorBackend* found = nullptr;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto& backend : r.backends) {
      if (backend.name() == name) found = &backend;
    }
  }
  STRATA_CHECK(found, "communicator backend: got \"", name, "\", expected one of ",
               joined(registered_backends()), " (available here: ", joined(available_backends()),
               ")");
  STRATA_CHECK(!must_be_available || found->is_available(), "communicator backend \"", name,
               "\": not available here, expected ",
               found->requirement().empty() ? "it to be built in" : found->requirement(),
               " (available here: ", joined(available_backends()), ")");
  return *found;
}

}  // namespace strata::parallel
