#pragma once
// How a program joins its job, from its command line: --timeout and --hang-report bind to
// the control plane's options (strata/parallel/control/control_plane.h).
//
//   strata::programs::ReliabilityFlags reliability;
//   strata::programs::add_reliability_flags(app, reliability);
//   ... parse ...
//   strata::parallel::ControlPlane control(*world, reliability.control_plane);

#include <CLI/CLI.hpp>

#include "strata/parallel/control/control_plane.h"

namespace strata::programs {

struct ReliabilityFlags {
  parallel::ControlPlaneOptions control_plane;  // --timeout, --hang-report
};

// --timeout (its default from STRATA_TIMEOUT when strata-run sets it), --hang-report.
void add_reliability_flags(CLI::App& app, ReliabilityFlags& flags);

}  // namespace strata::programs
