#pragma once
// Pipeline schedules by name, as torch pipelining's get_schedule_class: one table maps a
// name to its generator, and everything that needs a schedule by name (make_pipeline_schedule,
// the --schedule flags, strata-schedule) reads it. Figures that depend on the schedule (its
// idle fraction, the micro-batches each stage holds) are derived by simulating the
// generated schedule, never from per-name formulas, so a registered schedule gets them too.
//
//   register_schedule({"reversed", make_reversed, false, "GPipe, backwards in reverse"});
//   PipelineSchedule s = make_pipeline_schedule("reversed", 4, 8);
//
// See docs/pipeline.md, "Schedules by name".

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

// (ranks, micro_batches, virtual_stages) -> the schedule. A schedule without virtual stages
// is only called with virtual_stages = 1.
using ScheduleGenerator =
    std::function<PipelineSchedule(int ranks, int micro_batches, int virtual_stages)>;

struct ScheduleEntry {
  std::string name;  // as --schedule takes it; the generated schedule's name
  ScheduleGenerator generate;
  bool supports_virtual_stages = false;
  std::string description;  // one line, for strata-schedule --list
};

// Adds `entry` for every later lookup. Throws strata::Error for an empty name or
// description, a missing generator, or a name already registered. Thread-safe; register
// before the flags are parsed to make a schedule one of --schedule's choices.
void register_schedule(ScheduleEntry entry);
// The entry registered as `name`, or nullptr. Entries are never removed, so the pointer
// stays valid.
const ScheduleEntry* find_schedule(const std::string& name);
// Every registered name in registration order: the built-ins gpipe, 1f1b, interleaved,
// zb-h1, then the user's.
std::vector<std::string> schedule_names();
// The entry registered as `name`; throws strata::Error naming the registered ones if none
// is.
const ScheduleEntry& schedule_entry(const std::string& name);

// The fraction of a step a rank idles under the schedule with K ranks, M micro-batches
// and v chunks per rank, when every pass costs the same (F = B = W = 1, a fused backward
// 2) and transfers are free: simulate_schedule's idle fraction of the generated schedule,
// averaged over the ranks. The schedule's own errors (unknown name, bad shape) propagate.
double schedule_idle_fraction(const std::string& name, int ranks, int micro_batches,
                              int virtual_stages = 1);
// Per stage (ranks * v of them): the most micro-batches whose activations the stage holds
// at once under the schedule (simulate_schedule's stage_peak_in_flight), for MemoryModel.
std::vector<int64_t> schedule_in_flight(const std::string& name, int ranks, int micro_batches,
                                        int virtual_stages = 1);

}  // namespace strata::parallel
