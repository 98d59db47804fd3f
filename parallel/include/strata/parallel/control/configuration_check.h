#pragma once
// Ranks started with different flags (an MPMD mpirun line, a stale binary or script on one
// node) would train different models and hang or diverge far from the cause. At start-up
// every rank hashes its configuration; if the hashes differ, every rank stops with the
// same message naming the first flag that differs and its values.
//
//   strata::parallel::check_same_configuration(*world, strata::programs::configuration_text(app));

#include <string>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// Collective over `world`. `configuration`: "key=value" lines
// (strata::programs::configuration_text). Throws strata::Error on every rank when they differ, e.g.
//   "configuration differs across ranks: rank 1 has lr=0.1 where rank 0 has lr=0.05"
void check_same_configuration(Communicator& world, const std::string& configuration);

}  // namespace strata::parallel
