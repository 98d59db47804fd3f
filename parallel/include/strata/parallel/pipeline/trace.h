#pragma once
// What a pipeline step's records say: how much of the step each rank computed, what the
// textbook formulas say it should, and a timeline of every rank in one Chrome trace.
// See docs/pipeline.md, "Timelines and idle time".

#include <optional>
#include <string>
#include <vector>

#include "strata/core/chrome_trace.h"
#include "strata/parallel/comm/communicator.h"
#include "strata/parallel/pipeline/executor.h"

namespace strata::parallel {

// True for Forward, Backward, BackwardInput and BackwardWeight: the passes the bubble
// formulas count as work. Transfers, waits, the all-reduce and the optimizer step are not.
bool is_compute(PipelineOp op);

// Seconds the records spent in compute instructions.
double busy_seconds(const std::vector<PipelineInstructionRecord>& records);

struct PipelineIdle {
  double wall = 0;           // seconds
  double busy = 0;           // seconds in compute instructions
  double idle_fraction = 0;  // 1 - busy / wall; 0 when wall is 0
};

// wall: from the first record's start to the last record's end (0 for no records).
PipelineIdle measure_idle(const std::vector<PipelineInstructionRecord>& records);
// Against a wall time the caller measured, such as the whole train_step: the formulas
// assume every rank is charged for the same step, while one rank's records may end early
// (the last stage finishes its backwards K-1 passes before stage 0). wall_seconds must be
// at least the records' busy time.
PipelineIdle measure_idle(const std::vector<PipelineInstructionRecord>& records,
                          double wall_seconds);

// The fraction of a step a rank idles under `schedule` with K ranks, M micro-batches and
// v chunks per rank, if every pass of a stage costs the same and transfers are free:
// schedule_idle_fraction (schedule_registry.h), the generated schedule simulated with unit
// costs, so it holds for any registered schedule. For the built-ins it equals the papers'
// bubbles b / (1 + b) where they are exact:
//   gpipe, 1f1b:  b = (K-1)/M          ->  (K-1)/(M+K-1)      (v must be 1)
//   interleaved:  b = (K-1)/(v*M)      ->  (K-1)/(v*M+K-1)    (Narayanan et al. 2021)
//   zb-h1:        b = (K-1)/(3M)       ->  (K-1)/(3M+K-1)     (Qi et al. 2023, F = B = W;
//                 for M >= K: with fewer micro-batches the W passes cannot fill the
//                 cool-down, and the simulated value is the larger real bubble)
// Raises strata::Error for an unknown schedule, K, M or v below 1, v != 1 for a schedule
// without virtual stages, or a shape the generator refuses.
double theoretical_idle_fraction(const std::string& schedule, int K, int M, int virtual_stages = 1);

// Rows a rank's trace uses besides one per stage (tid = stage): transfers and waits, and
// the all-reduce and optimizer step.
inline constexpr int kTraceCommRow = 10000;
inline constexpr int kTraceStepRow = 10001;

// Adds one step's records of pipeline rank `pid` to `trace`: process "rank <pid>", a row
// "stage s" (tid s) per stage with boxes forward / backward / B / W, a row "comm" with the
// sends and receives (a receive's box is the time the rank waited for it), and a row
// "step" with the all-reduce and the optimizer step. Times are offset_us + record time;
// every box's args hold the step, stage and micro-batch (and peer, for transfers).
void add_pipeline_records(core::ChromeTrace& trace,
                          const std::vector<PipelineInstructionRecord>& records, int pid,
                          double offset_us, int step);

// The last step of every pipeline rank (executors[r] runs rank r: an in-process pipeline's
// executors) replayed on the durations an InstructionClock gave its instructions
// (PipelineInstructionRecord::simulated): the pipeline's timeline in simulated time. None
// when the executors are not the whole pipeline or an instruction has no such duration.
std::optional<PipelineSimulation> replay_records(
    const std::vector<const PipelineExecutor*>& executors);

// The process of a trace that holds the timeline in simulated time.
inline constexpr int kTraceSimulatedPid = 100000;

// Adds one replayed step to `trace`: process kTraceSimulatedPid "simulated time", a row per
// pipeline rank ("rank r on <device>": its compute passes and the optimizer step) and a row
// per link ("link r->p": each transfer from its send to its arrival). Times are
// offset_us + simulated time.
void add_simulated_records(core::ChromeTrace& trace, const PipelineSchedule& schedule,
                           const PipelineSimulation& simulation,
                           const std::vector<std::string>& device_names, double offset_us,
                           int step);

// Collective over `comm`: every rank's `local` trace, merged, on `root`; an empty trace on
// the other ranks. Traces travel as JSON text in uint8 tensors (sizes all-gathered first,
// then the bytes sent to root). Call it between steps, not during one.
core::ChromeTrace gather_trace(Communicator& comm, const core::ChromeTrace& local, int root = 0);

// The timeline of several steps of one executor, every rank in one trace: call add_step
// after each step to keep (on every rank of `comm`, the first call is collective), then
// write() on every rank. On one host the rows of all ranks share one time axis. When the
// executors are a whole pipeline timed by an InstructionClock (stages on simulated
// devices), its timeline in simulated time goes beside it (replay_records, steps end to
// end).
//
//   PipelineTraceRecorder trace(world, world->rank());
//   for (...) { executor.train_step(...); if (keep) trace.add_step(executor, step); }
//   trace.write("out/trace.json");   // rank 0 writes
class PipelineTraceRecorder {
 public:
  // `pid`: this rank's row group in the trace (its world rank, say).
  PipelineTraceRecorder(CommunicatorPtr comm, int pid);
  void add_step(const PipelineExecutor& executor, int step);
  // The executors of several pipeline ranks in this process (in-process devices): the i-th
  // gets the rows of pid + i.
  void add_step(const std::vector<const PipelineExecutor*>& executors, int step);
  // Collective: gathers every rank's steps and writes them on `root`.
  void write(const std::string& path, int root = 0);
  int steps() const { return steps_; }
  // This process's part of the trace so far.
  const core::ChromeTrace& trace() const { return trace_; }

 private:
  CommunicatorPtr comm_;
  int pid_;
  int steps_ = 0;
  double origin_us_ = 0;
  double simulated_us_ = 0;  // where the next step's simulated timeline starts
  core::ChromeTrace trace_;
};

}  // namespace strata::parallel
