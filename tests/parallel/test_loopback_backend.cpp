// A backend added the way a user adds one, by registration alone: "loopback" is the
// in-process backend with every operation written to a flight recorder of its own. One
// register_backend call and one instantiation line per shared suite run the whole
// communicator suite on it, on 3 threads (a world size the built-in backends do not test).
#include "comm_test_support.h"
#include "strata/core/error.h"
#include "strata/core/flight_recorder.h"
#include "strata/parallel/comm/backend_registry.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/comm/recording_communicator.h"

namespace strata::parallel::testing {
namespace {

core::FlightRecorder& loopback_recorder() {
  static core::FlightRecorder recorder(256);
  return recorder;
}

ThreadGroup loopback_threads(int size, std::chrono::milliseconds timeout) {
  ThreadGroup ranks;
  for (auto& rank : InProcessCommunicator::create(size, timeout))
    ranks.push_back(record_operations(rank, loopback_recorder()));
  return ranks;
}

[[maybe_unused]] const bool registered = register_backend(
    CommunicatorBackend()
        .name("loopback")
        .make_world([](const BackendContext& context) {
          STRATA_CHECK(context.world_size == 1, "loopback world size: got ", context.world_size,
                       ", expected 1");
          return loopback_threads(1, InProcessCommunicator::default_timeout).front();
        })
        .make_threads(loopback_threads));

}  // namespace

INSTANTIATE_TEST_SUITE_P(Loopback, CommunicatorOps,
                         ::testing::ValuesIn(op_params(backend_jobs("loopback", {3}),
                                                       quick_op_cases())),
                         op_test_name);
INSTANTIATE_TEST_SUITE_P(Loopback, CommunicatorSemantics,
                         ::testing::ValuesIn(backend_jobs("loopback", {3})), job_test_name);

// The suites ran on the loopback ranks, not on some other backend's.
TEST(LoopbackBackend, RecordsWhatItCarries) {
  run_on({"loopback", 3}, [](Communicator& c) {
    at::Tensor t = at::ones({2});
    c.allreduce(t)->wait();
  });
  bool seen = false;
  for (const auto& record : loopback_recorder().finished())
    seen = seen || record.description.find("allreduce") != std::string::npos;
  EXPECT_TRUE(seen) << "no allreduce in the loopback's flight recorder";
}

}  // namespace strata::parallel::testing
