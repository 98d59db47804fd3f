// A strata program that hangs on purpose, for the watchdog's end-to-end tests.
//
//   mpirun -np 2 hang_program --fault recv --timeout 3 --hang-report hang.json
//
// --fault recv: rank 1 receives from rank 0 a message rank 0 never sends, while rank 0
// waits in a barrier; the watchdog must end both within the timeout, with a report that
// says rank 1 waits for rank 0. --fault none: a few healthy all-reduces, exit 0.
// --fault exit: rank 1 leaves at once with status 5, the others wait in a barrier.
#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "strata/core/flight_recorder.h"
#include "strata/parallel/control/control_plane.h"
#include "strata/programs/cli.h"
#include "strata/programs/reliability_flags.h"

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    std::string fault = "recv";
    int steps = 5;
    strata::programs::ReliabilityFlags reliability;
    CLI::App app{"Hangs on purpose (watchdog tests)."};
    strata::programs::configure_cli(app);
    app.add_option("--fault", fault, "recv, exit or none")
        ->check(CLI::IsMember({"recv", "exit", "none"}));
    app.add_option("--steps", steps, "Healthy steps before the fault");
    strata::programs::add_reliability_flags(app, reliability);
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;

    auto world = strata::parallel::world_communicator(reliability.backend);
    strata::parallel::ControlPlane control(*world, reliability.control_plane);
    const int rank = world->rank();
    for (int step = 0; step < steps; ++step) {
      strata::core::FlightRecordScope record("step " + std::to_string(step));
      at::Tensor t = at::full({256}, rank + 1.0f);
      world->allreduce(t)->wait();
      const float expected = world->size() * (world->size() + 1) / 2.0f;
      if (t[0].item<float>() != expected) {
        std::fprintf(stderr, "error: allreduce gave %f, expected %f\n", t[0].item<float>(),
                     expected);
        return 1;
      }
    }
    if (fault == "recv") {
      if (rank == 1) {
        at::Tensor t = at::empty({4});
        world->recv(t, 0, 7);  // nobody sends it
      } else {
        world->barrier()->wait();
      }
    } else if (fault == "exit" && rank == 1) {
      std::fprintf(stderr, "rank 1 leaves on purpose\n");
      std::_Exit(5);
    } else if (fault == "exit") {
      world->barrier()->wait();
    }
    control.finish();
    if (rank == 0)
      std::printf("hang_program: %d healthy steps on %d rank(s)\n", steps, world->size());
    return 0;
  });
}
