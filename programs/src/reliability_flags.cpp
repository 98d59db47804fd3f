#include "strata/programs/reliability_flags.h"

#include <cstdlib>
#include <string>

#include "strata/core/error.h"
#include "strata/parallel/comm/backend_registry.h"

namespace strata::programs {

void add_reliability_flags(CLI::App& app, ReliabilityFlags& flags) {
  parallel::ControlPlaneOptions& options = flags.control_plane;
  // strata-run --timeout passes its value down as the default.
  if (const char* env = std::getenv("STRATA_TIMEOUT")) {
    try {
      options.timeout(std::stod(env));
    } catch (const std::exception&) {
      STRATA_FAIL("STRATA_TIMEOUT: got \"", env, "\", expected a number of seconds");
    }
  }
  app.add_option("--timeout", options.timeout(),
                 "Seconds a rank may wait in one operation or go without a heartbeat before the "
                 "watchdog aborts the job with a report (0: no watchdog)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--hang-report", options.hang_report(),
                 "Write the watchdog's report of a hang here as JSON");
  std::string names;
  for (const auto& name : parallel::registered_backends())
    names += (names.empty() ? "" : ", ") + name;
  app.add_option("--backend", flags.backend,
                 "Communicator backend of the job's world: " + names +
                     " (default: $STRATA_BACKEND, else gloo under strata-run and mpi otherwise)");
}

}  // namespace strata::programs
