// strata-schedule: generate, verify and simulate pipeline schedules without running a model.
//
//   strata-schedule --schedule zb-h1 --ranks 4 --micro-batches 8 --print --trace-out zb.json
//   strata-schedule --load my_schedule.json          # verify a hand-written schedule
//   strata-schedule --list                           # the registered schedules
//
// Prints each rank's simulated idle fraction and peak in-flight micro-batches; the
// Chrome trace shows the simulated timeline (one row per rank) in Perfetto.
#include <algorithm>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "strata/core/chrome_trace.h"
#include "strata/core/error.h"
#include "strata/core/json_fields.h"
#include "strata/core/memory.h"
#include "strata/core/output_files.h"
#include "strata/parallel/pipeline/schedule.h"
#include "strata/parallel/pipeline/schedule_json.h"
#include "strata/parallel/pipeline/schedule_registry.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/output_flags.h"

namespace {

using strata::parallel::PipelineCosts;
using strata::parallel::PipelineSchedule;

struct Config {
  std::string schedule = "1f1b";
  int ranks = 2;
  int micro_batches = 8;
  int virtual_stages = 1;
  std::string load;
  std::string save;
  std::string trace_out;
  bool overwrite = false;
  bool print = false;
  bool list = false;
  PipelineCosts costs;
};

PipelineSchedule load_schedule(const std::string& path) {
  return strata::parallel::schedule_from_json(strata::core::read_json_file(path, "--load"),
                                              "--load " + path);
}

void write_trace(const PipelineSchedule& schedule, const strata::parallel::PipelineSimulation& sim,
                 const std::string& path) {
  strata::core::ChromeTrace trace;
  trace.set_process_name(0, "simulated " + schedule.name + " (time unit: 1 forward = 1 ms)");
  for (int r = 0; r < schedule.num_ranks; ++r) {
    trace.set_thread_name(0, r, "rank " + std::to_string(r));
    for (size_t i = 0; i < schedule.ranks[r].size(); ++i) {
      const auto& [start, end] = sim.intervals[r][i];
      if (end <= start) continue;  // transfers and the step take no simulated time
      const auto& in = schedule.ranks[r][i];
      trace.add_complete(strata::parallel::to_string(in), strata::parallel::to_string(in.op), 0, r,
                         start * 1000.0, (end - start) * 1000.0,
                         {{"stage", in.stage}, {"micro_batch", in.micro_batch}});
    }
  }
  trace.write(path);
}

// One line per registered schedule: name, whether it takes --virtual-stages, description.
void list_schedules() {
  size_t width = 4;
  for (const std::string& name : strata::parallel::schedule_names())
    width = std::max(width, name.size());
  std::cout << fmt::format("{:<{}}  virtual stages  description\n", "name", width);
  for (const std::string& name : strata::parallel::schedule_names()) {
    const auto& entry = strata::parallel::schedule_entry(name);
    std::cout << fmt::format("{:<{}}  {:<14}  {}\n", name, width,
                             entry.supports_virtual_stages ? "yes" : "no", entry.description);
  }
}

int run(const Config& c) {
  if (c.list) {
    list_schedules();
    return 0;
  }
  if (c.load.empty())  // before generating: a shape beyond this machine is refused with its size
    strata::core::check_fits(
        fmt::format("--micro-batches {} with --ranks {} and --virtual-stages {} (the schedule)",
                    c.micro_batches, c.ranks, c.virtual_stages),
        strata::parallel::estimate_schedule_bytes(c.ranks, c.micro_batches, c.virtual_stages));
  const PipelineSchedule schedule =
      c.load.empty() ? strata::parallel::make_pipeline_schedule(c.schedule, c.ranks,
                                                                c.micro_batches, c.virtual_stages)
                     : load_schedule(c.load);
  strata::parallel::verify_schedule(schedule);
  if (c.print) std::cout << strata::parallel::format_schedule(schedule) << "\n";
  const auto sim = strata::parallel::simulate_schedule(schedule, c.costs);
  std::cout << fmt::format("schedule '{}': {} ranks, {} stages, {} micro-batches: verified\n",
                           schedule.name, schedule.num_ranks, schedule.num_stages,
                           schedule.num_micro_batches);
  std::cout << fmt::format(
      "simulated makespan {:.2f} (forward {}, backward-input {}, "
      "backward-weight {}, send {})\n",
      sim.makespan, c.costs.forward, c.costs.backward_input, c.costs.backward_weight, c.costs.send);
  for (int r = 0; r < schedule.num_ranks; ++r) {
    std::cout << fmt::format("  rank {}: idle {:5.1f}%  peak in flight {}\n", r,
                             100 * sim.idle_fraction[r], sim.peak_in_flight[r]);
  }
  const double k = schedule.num_ranks, m = schedule.num_micro_batches;
  std::cout << fmt::format("for reference, the bubble of GPipe and 1F1B (K-1)/(M+K-1) = {:.1f}%\n",
                           100 * (k - 1) / (m + k - 1));
  if (!c.save.empty()) {
    strata::core::write_file_atomically(
        c.save, strata::parallel::schedule_to_json(schedule).dump(1) + "\n");
  }
  if (!c.trace_out.empty()) write_trace(schedule, sim, c.trace_out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config c;
    CLI::App app{"Generate, verify and simulate pipeline schedules."};
    strata::programs::configure_cli(app);
    app.add_option("--schedule", c.schedule, "Pipeline schedule (--list describes them)")
        ->check(CLI::IsMember(strata::parallel::schedule_names()));
    using namespace strata::programs;  // NOLINT(google-build-using-namespace): flag ranges
    integer_range(app.add_option("--ranks", c.ranks, "Pipeline ranks (K)"), 1, kMaxRanks);
    integer_range(app.add_option("--micro-batches", c.micro_batches, "Micro-batches per batch (M)"),
                  1, kMaxMicroBatches);
    integer_range(
        app.add_option("--virtual-stages", c.virtual_stages, "Model chunks per rank (interleaved)"),
        1, kMaxLayers);
    app.add_option("--load", c.load, "Verify and simulate this JSON schedule instead");
    app.add_option("--save", c.save, "Write the schedule as JSON");
    app.add_option("--trace-out", c.trace_out, "Write the simulated timeline as a Chrome trace");
    strata::programs::add_overwrite_flag(app, c.overwrite);
    app.add_flag("--print", c.print, "Print every rank's instruction list");
    app.add_flag("--list", c.list, "List the registered schedules and exit");
    real_range(app.add_option("--forward", c.costs.forward, "Simulated cost of a forward pass"), 0,
               kMaxCost);
    real_range(
        app.add_option("--backward-input", c.costs.backward_input, "Cost of a backward-input pass"),
        0, kMaxCost);
    real_range(app.add_option("--backward-weight", c.costs.backward_weight,
                              "Cost of a backward-weight pass"),
               0, kMaxCost);
    real_range(app.add_option("--send", c.costs.send, "Cost of a transfer"), 0, kMaxCost);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    // Before any work: an output never replaces --load or a file the user did not offer.
    // And that it can be written (the trace's missing folders are created).
    strata::core::check_writable("--save", c.save, strata::core::OutputKind::File,
                                 /*creates_parents=*/false);
    strata::core::check_writable("--trace-out", c.trace_out);
    strata::core::check_output("--save", c.save, {c.load}, c.overwrite);
    strata::core::check_output("--trace-out", c.trace_out, {c.load}, c.overwrite);
    return run(c);
  });
}
