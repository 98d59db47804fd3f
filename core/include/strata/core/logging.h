#pragma once
// Logging goes through spdlog's default logger (`spdlog::info(...)`); this sets it up
// the strata way once per process.

namespace strata::core {

// Pattern `[strata HH:MM:SS.mmm] message` (`[strata HH:MM:SS.mmm rank N] message` when
// all_ranks). Ranks other than 0 log only warnings and errors unless all_ranks, so that
// N ranks do not print N copies of every line.
void init_logging(int rank, bool all_ranks = false);

}  // namespace strata::core
