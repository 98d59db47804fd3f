#pragma once
// Exchanging a few bytes of metadata over a Communicator.

#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// Every rank's `mine`, in rank order (a collective over `comm`): what ranks agree on before
// they act (a pipeline's stage contents, a sharded checkpoint's shard entries or errors).
std::vector<std::string> allgather_strings(Communicator& comm, const std::string& mine);

}  // namespace strata::parallel
