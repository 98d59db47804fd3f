#pragma once
// How a program joins its job, from its command line: --backend names the data plane's
// communicator backend (world_communicator), --timeout and --hang-report bind to the control
// plane's options (strata/parallel/control/control_plane.h).
//
//   strata::programs::ReliabilityFlags reliability;
//   strata::programs::add_reliability_flags(app, reliability);
//   ... parse ...
//   auto world = strata::parallel::world_communicator(reliability.backend);
//   strata::parallel::ControlPlane control(*world, reliability.control_plane);

#include <CLI/CLI.hpp>

#include <string>

#include "strata/parallel/control/control_plane.h"

namespace strata::programs {

struct ReliabilityFlags {
  parallel::ControlPlaneOptions control_plane;  // --timeout, --hang-report
  std::string backend;  // --backend; empty: $STRATA_BACKEND, else gloo under strata-run, mpi
};

// --backend, --timeout (its default from STRATA_TIMEOUT when strata-run sets it),
// --hang-report, --straggler-threshold.
void add_reliability_flags(CLI::App& app, ReliabilityFlags& flags);

}  // namespace strata::programs
