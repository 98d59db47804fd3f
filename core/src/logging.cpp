#include "strata/core/logging.h"

#include <spdlog/spdlog.h>

#include <string>

namespace strata::core {

void init_logging(int rank, bool all_ranks) {
  if (all_ranks) {
    spdlog::set_pattern("[strata %H:%M:%S.%e rank " + std::to_string(rank) + "] %v");
    spdlog::set_level(spdlog::level::info);
  } else {
    spdlog::set_pattern("[strata %H:%M:%S.%e] %v");
    // Other ranks keep warnings and errors: those are rare and say which rank failed.
    spdlog::set_level(rank == 0 ? spdlog::level::info : spdlog::level::warn);
  }
}

}  // namespace strata::core
