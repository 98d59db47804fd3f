// The registry of communicator backends, and world_communicator's choice by name: an
// explicit name, else STRATA_BACKEND, else the automatic choice. Nothing here makes the
// process's world (world_communicator only fails), so the other suites keep theirs.
#include <algorithm>
#include <cstdlib>

#include "comm_test_support.h"
#include "strata/parallel/comm/backend_registry.h"
#include "strata/parallel/control/control_plane.h"

namespace strata::parallel::testing {
namespace {

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Sets an environment variable for the scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.empty()) {
      unsetenv(name_);
    } else {
      setenv(name_, old_.c_str(), 1);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
};

TEST(CommunicatorBackends, BuiltInOnesComeFirst) {
  const auto names = registered_backends();
  ASSERT_GE(names.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 4),
            (std::vector<std::string>{"mpi", "gloo", "nccl", "inprocess"}));
  const auto available = available_backends();
  EXPECT_TRUE(contains(available, "mpi"));
  EXPECT_TRUE(contains(available, "inprocess"));
  EXPECT_EQ(contains(available, "gloo"), gloo_available());
#ifdef STRATA_WITH_NCCL
  EXPECT_TRUE(contains(available, "nccl"));
#else
  EXPECT_FALSE(contains(available, "nccl"));
  expect_error([] { communicator_backend("nccl"); },
               "communicator backend \"nccl\": not available here, expected a build with CUDA "
               "LibTorch and NCCL (available here: mpi");
  EXPECT_EQ(communicator_backend("nccl", false).name(), "nccl");
#endif
}

TEST(CommunicatorBackends, UnknownNamesListTheRegisteredAndAvailableOnes) {
  expect_error([] { communicator_backend("carrier-pigeon"); },
               "communicator backend: got \"carrier-pigeon\", expected one of mpi, gloo, nccl, "
               "inprocess");
  expect_error([] { communicator_backend("carrier-pigeon"); }, "(available here: mpi, ");
}

TEST(CommunicatorBackends, RegisterChecksNameAndFactory) {
  auto world = [](const BackendContext&) -> CommunicatorPtr { return nullptr; };
  expect_error([&] { register_backend(CommunicatorBackend().make_world(world)); },
               "communicator backend name: got \"\", expected a name");
  expect_error([] { register_backend(CommunicatorBackend().name("no-factory")); },
               "communicator backend \"no-factory\": got no make_world");
  expect_error([&] { register_backend(CommunicatorBackend().name("gloo").make_world(world)); },
               "communicator backend \"gloo\": registered twice, expected a new name");
  EXPECT_FALSE(contains(registered_backends(), "no-factory"));
}

TEST(CommunicatorBackends, WorldsNeedWhatTheirBackendNeeds) {
  BackendContext two_ranks;
  two_ranks.world_size = 2;
  expect_error([&] { communicator_backend("inprocess").make_world()(two_ranks); },
               "inprocess backend world size: got 1, expected 2");
  if (gloo_available()) {
    expect_error([] { communicator_backend("gloo").make_world()(BackendContext()); },
                 "gloo backend: got no control store address, expected a job started by "
                 "tools/strata-run");
  }
  // A process strata-run started as one of 2 ranks is an MPI world of one (a singleton).
  BackendContext strata_run = two_ranks;
  strata_run.store_address = "127.0.0.1:1";
  expect_error([&] { communicator_backend("mpi").make_world()(strata_run); },
               "mpi backend world size: got 1, expected 2");
  auto alone = communicator_backend("inprocess").make_world()(BackendContext());
  EXPECT_EQ(alone->size(), 1);
  EXPECT_EQ(alone->backend(), "inprocess");
}

TEST(CommunicatorBackends, WorldCommunicatorPicksTheNameThenStrataBackend) {
  expect_error([] { world_communicator("carrier-pigeon"); },
               "communicator backend: got \"carrier-pigeon\", expected one of mpi, gloo");
  ScopedEnv env("STRATA_BACKEND", "smoke-signal");
  expect_error([] { world_communicator(); }, "communicator backend: got \"smoke-signal\"");
  // The argument wins over the environment.
  expect_error([] { world_communicator("carrier-pigeon"); }, "got \"carrier-pigeon\"");
}

// A backend without its instantiation lines would silently go untested.
TEST(CommunicatorBackends, EveryAvailableBackendRunsTheSharedSuites) {
  const auto instantiated = instantiated_backends();
  for (const auto& name : available_backends()) {
    EXPECT_TRUE(contains(instantiated, name))
        << "backend \"" << name
        << "\" has no INSTANTIATE_TEST_SUITE_P of CommunicatorOps and CommunicatorSemantics";
  }
}

}  // namespace
}  // namespace strata::parallel::testing
