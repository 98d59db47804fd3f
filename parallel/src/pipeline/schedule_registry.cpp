// The schedule registry and the one place the built-in schedules are registered. The
// generators themselves live in schedules/, one file each. Built-ins are listed here rather
// than registering themselves from their own files: static initializers in a static
// library run only when the linker keeps their object file, which nothing guarantees.
#include "strata/parallel/pipeline/schedule_registry.h"

#include <deque>
#include <mutex>
#include <numeric>

#include "strata/core/error.h"

namespace strata::parallel {

namespace {

std::vector<ScheduleEntry> builtin_schedules() {
  auto one_stage_per_rank = [](PipelineSchedule (*make)(int, int)) {
    return [make](int ranks, int micro_batches, int) { return make(ranks, micro_batches); };
  };
  return {
      {"gpipe", one_stage_per_rank(make_gpipe_schedule), false,
       "all forwards, then all backwards (GPipe); every stage holds M micro-batches"},
      {"1f1b", one_stage_per_rank(make_1f1b_schedule), false,
       "one forward, one backward after K-r-1 warm-up forwards; stage s holds min(K-s, M)"},
      {"interleaved", make_interleaved_1f1b_schedule, true,
       "Megatron-LM's interleaved 1F1B, v chunks per rank; M a multiple of K"},
      {"zb-h1", one_stage_per_rank(make_zb_h1_schedule), false,
       "ZB-H1 (zero bubble): 1F1B with B and W split, W passes fill the cool-down"},
  };
}

struct Registry {
  std::mutex mutex;
  std::deque<ScheduleEntry> entries;  // a deque: pointers to entries survive additions

  // Call with the mutex held.
  const ScheduleEntry* find(const std::string& name) const {
    for (const ScheduleEntry& e : entries)
      if (e.name == name) return &e;
    return nullptr;
  }
  std::string names() const {
    std::string list;
    for (const ScheduleEntry& e : entries) list += (list.empty() ? "" : ", ") + e.name;
    return list;
  }
  void add(ScheduleEntry entry) {
    STRATA_CHECK(!entry.name.empty(), "register pipeline schedule: the name is empty");
    STRATA_CHECK(entry.generate != nullptr, "register pipeline schedule '", entry.name,
                 "': no generator");
    STRATA_CHECK(!entry.description.empty(), "register pipeline schedule '", entry.name,
                 "': the description is empty");
    STRATA_CHECK(find(entry.name) == nullptr, "register pipeline schedule '", entry.name,
                 "': the name is already registered (registered: ", names(), ")");
    entries.push_back(std::move(entry));
  }
};

Registry& registry() {
  static Registry* const instance = [] {
    auto* r = new Registry;  // never destroyed: other static destructors may still look up
    for (ScheduleEntry& e : builtin_schedules()) r->add(std::move(e));
    return r;
  }();
  return *instance;
}

}  // namespace

void register_schedule(ScheduleEntry entry) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.add(std::move(entry));
}

const ScheduleEntry* find_schedule(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.find(name);
}

std::vector<std::string> schedule_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const ScheduleEntry& e : r.entries) names.push_back(e.name);
  return names;
}

const ScheduleEntry& schedule_entry(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const ScheduleEntry* entry = r.find(name);
  STRATA_CHECK(entry != nullptr, "pipeline schedule name: got '", name, "', expected one of ",
               r.names());
  return *entry;
}

PipelineSchedule make_pipeline_schedule(const std::string& name, int ranks, int micro_batches,
                                        int virtual_stages) {
  const ScheduleEntry& entry = schedule_entry(name);
  if (!entry.supports_virtual_stages) {
    std::string with;
    for (const std::string& other : schedule_names())
      if (find_schedule(other)->supports_virtual_stages) with += (with.empty() ? "" : ", ") + other;
    STRATA_CHECK(virtual_stages == 1, "pipeline schedule '", name,
                 "': virtual_stages must be 1 (schedules with virtual stages: ", with, "), got ",
                 virtual_stages);
  }
  PipelineSchedule schedule = entry.generate(ranks, micro_batches, virtual_stages);
  // A user's generator that builds another shape than asked would otherwise surface as a
  // confusing verifier or executor error.
  STRATA_CHECK(schedule.name == name && schedule.num_ranks == ranks &&
                   schedule.num_stages == ranks * virtual_stages &&
                   schedule.num_micro_batches == micro_batches,
               "pipeline schedule '", name, "': the generator made '", schedule.name, "' with ",
               schedule.num_ranks, " ranks, ", schedule.num_stages, " stages, ",
               schedule.num_micro_batches, " micro-batches; expected '", name, "' with ", ranks,
               " ranks, ", ranks * virtual_stages, " stages, ", micro_batches, " micro-batches");
  return schedule;
}

double schedule_idle_fraction(const std::string& name, int ranks, int micro_batches,
                              int virtual_stages) {
  const PipelineSimulation sim =
      simulate_schedule(make_pipeline_schedule(name, ranks, micro_batches, virtual_stages));
  return std::accumulate(sim.idle_fraction.begin(), sim.idle_fraction.end(), 0.0) /
         static_cast<double>(sim.idle_fraction.size());
}

std::vector<int64_t> schedule_in_flight(const std::string& name, int ranks, int micro_batches,
                                        int virtual_stages) {
  const PipelineSimulation sim =
      simulate_schedule(make_pipeline_schedule(name, ranks, micro_batches, virtual_stages));
  return {sim.stage_peak_in_flight.begin(), sim.stage_peak_in_flight.end()};
}

}  // namespace strata::parallel
