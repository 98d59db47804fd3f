#include "strata/programs/reliability_flags.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "strata/core/error.h"
#include "strata/parallel/comm/backend_registry.h"
#include "strata/programs/number_flags.h"

namespace strata::programs {

void add_reliability_flags(CLI::App& app, ReliabilityFlags& flags) {
  parallel::ControlPlaneOptions& options = flags.control_plane;
  // strata-run --timeout passes its value down as the default.
  if (const char* env = std::getenv("STRATA_TIMEOUT")) {
    double seconds = -1;
    try {
      size_t used = 0;
      seconds = std::stod(env, &used);
      if (used != std::string(env).size()) seconds = -1;
    } catch (const std::exception&) {
    }
    STRATA_CHECK(std::isfinite(seconds) && seconds >= 0 && seconds <= kMaxSeconds,
                 "STRATA_TIMEOUT: got \"", env, "\", expected a number of seconds between 0 and ",
                 static_cast<int64_t>(kMaxSeconds));
    options.timeout(seconds);
  }
  real_range(app.add_option("--timeout", options.timeout(),
                            "Seconds a rank may wait in one operation or go without a heartbeat "
                            "before the watchdog aborts the job with a report (0: no watchdog)"),
             0, kMaxSeconds);
  app.add_option("--hang-report", options.hang_report(),
                 "Write the watchdog's report of a hang here as JSON");
  real_range(app.add_option("--straggler-threshold", options.straggler().threshold(),
                            "Report a rank whose own work per step exceeds the other ranks' "
                            "median by more than this fraction (0: no report; needs the watchdog)"),
             0, 100);
  std::string names;
  for (const auto& name : parallel::registered_backends())
    names += (names.empty() ? "" : ", ") + name;
  app.add_option("--backend", flags.backend,
                 "Communicator backend of the job's world: " + names +
                     " (default: $STRATA_BACKEND, else gloo under strata-run and mpi otherwise)");
}

}  // namespace strata::programs
