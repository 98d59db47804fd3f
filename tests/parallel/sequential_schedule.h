#pragma once
// "sequential": a schedule the tests add through the schedule registry alone, as a user
// program would, without editing strata. One micro-batch at a time goes through the whole
// pipeline: rank r runs F(r, m) then BW(r, m) for m = 0, 1, ... No two ranks ever compute
// at once, so every rank idles (K-1)/K of the step and every stage holds one micro-batch:
// figures no built-in schedule has, so a test can tell that they were derived from this
// schedule.

namespace strata::parallel::testing {

inline constexpr const char* kSequentialSchedule = "sequential";

// Registers "sequential" on the first call; later calls do nothing.
void register_sequential_schedule();

}  // namespace strata::parallel::testing
