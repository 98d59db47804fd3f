#include "strata/parallel/pipeline/trace.h"

#include <algorithm>
#include <chrono>

#include "strata/core/error.h"
#include "strata/parallel/comm/tensor_message.h"
#include "strata/parallel/pipeline/schedule_registry.h"

namespace strata::parallel {

namespace {

// The largest tag MPI guarantees. A gather runs between steps, when every pipeline
// message has been received (train_step waits for them), so no message can match it.
constexpr int kGatherTag = 32767;

// Box names as the papers draw them.
const char* compute_name(PipelineOp op) {
  switch (op) {
    case PipelineOp::Forward: return "forward";
    case PipelineOp::Backward: return "backward";
    case PipelineOp::BackwardInput: return "B";
    case PipelineOp::BackwardWeight: return "W";
    default: return "";
  }
}

bool is_transfer(PipelineOp op) {
  return op == PipelineOp::SendActivation || op == PipelineOp::RecvActivation ||
         op == PipelineOp::SendGradient || op == PipelineOp::RecvGradient;
}

}  // namespace

bool is_compute(PipelineOp op) { return *compute_name(op) != '\0'; }

double busy_seconds(const std::vector<PipelineInstructionRecord>& records) {
  double busy = 0;
  for (const auto& r : records)
    if (is_compute(r.instruction.op)) busy += r.end - r.start;
  return busy;
}

PipelineIdle measure_idle(const std::vector<PipelineInstructionRecord>& records) {
  if (records.empty()) return {};
  double first = records.front().start, last = records.front().end;
  for (const auto& r : records) {
    first = std::min(first, r.start);
    last = std::max(last, r.end);
  }
  return measure_idle(records, last - first);
}

PipelineIdle measure_idle(const std::vector<PipelineInstructionRecord>& records,
                          double wall_seconds) {
  PipelineIdle idle;
  idle.wall = wall_seconds;
  idle.busy = busy_seconds(records);
  // A small tolerance: the clock is read separately for the records and the caller's wall.
  STRATA_CHECK(idle.busy <= wall_seconds * (1 + 1e-9) + 1e-9, "pipeline idle: ", idle.busy,
               " s of compute in a wall time of ", wall_seconds, " s");
  idle.idle_fraction = wall_seconds > 0 ? std::max(0.0, 1 - idle.busy / wall_seconds) : 0.0;
  return idle;
}

double theoretical_idle_fraction(const std::string& schedule, int K, int M, int virtual_stages) {
  STRATA_CHECK(K >= 1 && M >= 1 && virtual_stages >= 1, "theoretical idle fraction: K ", K, ", M ",
               M, ", v ", virtual_stages, ": each must be at least 1");
  return schedule_idle_fraction(schedule, K, M, virtual_stages);
}

void add_pipeline_records(core::ChromeTrace& trace,
                          const std::vector<PipelineInstructionRecord>& records, int pid,
                          double offset_us, int step) {
  trace.set_process_name(pid, "rank " + std::to_string(pid));
  for (const auto& r : records) {
    const PipelineInstruction& in = r.instruction;
    const double start_us = offset_us + r.start * 1e6;
    const double duration_us = std::max(0.0, r.end - r.start) * 1e6;
    nlohmann::json args = {{"step", step}};
    if (in.stage >= 0) args["stage"] = in.stage;
    if (in.micro_batch >= 0) args["micro_batch"] = in.micro_batch;
    if (is_compute(in.op)) {
      trace.set_thread_name(pid, in.stage, "stage " + std::to_string(in.stage));
      trace.add_complete(compute_name(in.op), "compute", pid, in.stage, start_us, duration_us,
                         args);
    } else if (is_transfer(in.op)) {
      args["peer"] = in.peer;
      trace.set_thread_name(pid, kTraceCommRow, "comm");
      trace.add_complete(to_string(in), "comm", pid, kTraceCommRow, start_us, duration_us, args);
    } else {
      trace.set_thread_name(pid, kTraceStepRow, "step");
      trace.add_complete(to_string(in), "step", pid, kTraceStepRow, start_us, duration_us, args);
    }
  }
}

std::optional<PipelineSimulation> replay_records(
    const std::vector<const PipelineExecutor*>& executors) {
  if (executors.empty()) return std::nullopt;
  const PipelineSchedule& schedule = executors[0]->schedule();
  if (static_cast<int>(executors.size()) != schedule.num_ranks) return std::nullopt;
  PipelineDurations durations(executors.size());
  for (size_t r = 0; r < executors.size(); ++r) {
    const auto& records = executors[r]->records();
    if (records.size() != schedule.ranks[r].size()) return std::nullopt;
    for (size_t i = 0; i < records.size(); ++i) {
      if (records[i].simulated < 0) return std::nullopt;
      STRATA_CHECK(records[i].instruction == schedule.ranks[r][i], "replay: rank ", r, " ran ",
                   to_string(records[i].instruction), " as instruction ", i,
                   ", expected the schedule's ", to_string(schedule.ranks[r][i]));
      durations[r].push_back(records[i].simulated);
    }
  }
  return simulate_schedule(schedule, durations);
}

void add_simulated_records(core::ChromeTrace& trace, const PipelineSchedule& schedule,
                           const PipelineSimulation& simulation,
                           const std::vector<std::string>& device_names, double offset_us,
                           int step) {
  const int pid = kTraceSimulatedPid;
  trace.set_process_name(pid, "simulated time");
  for (int r = 0; r < schedule.num_ranks; ++r) {
    const std::string device =
        r < static_cast<int>(device_names.size()) ? device_names[r] : std::string("?");
    trace.set_thread_name(pid, r, "rank " + std::to_string(r) + " on " + device);
    for (size_t i = 0; i < schedule.ranks[r].size(); ++i) {
      const PipelineInstruction& in = schedule.ranks[r][i];
      const auto& [start, end] = simulation.intervals[r][i];
      if (end <= start) continue;  // waits and sends take no time on the rank
      nlohmann::json args = {{"step", step}};
      if (in.stage >= 0) args["stage"] = in.stage;
      if (in.micro_batch >= 0) args["micro_batch"] = in.micro_batch;
      trace.add_complete(is_compute(in.op) ? compute_name(in.op) : to_string(in),
                         is_compute(in.op) ? "compute" : "step", pid, r, offset_us + start * 1e6,
                         (end - start) * 1e6, args);
    }
  }
  for (const auto& t : simulation.transfers) {
    // Rows after the ranks', one per directed link.
    const int row = schedule.num_ranks * (1 + t.from) + t.to;
    trace.set_thread_name(pid, row, "link " + std::to_string(t.from) + "->" + std::to_string(t.to));
    const PipelineInstruction& in = schedule.ranks[t.from][t.instruction];
    trace.add_complete(to_string(in), "transfer", pid, row, offset_us + t.start * 1e6,
                       (t.end - t.start) * 1e6,
                       {{"step", step}, {"stage", in.stage}, {"micro_batch", in.micro_batch}});
  }
}

core::ChromeTrace gather_trace(Communicator& comm, const core::ChromeTrace& local, int root) {
  STRATA_CHECK(root >= 0 && root < comm.size(), "gather trace: root ", root,
               " is not a rank of a communicator of ", comm.size());
  if (comm.rank() != root) {
    for (auto& work :
         isend_tensor(comm, string_to_tensor(local.to_json().dump()), root, kGatherTag))
      work->wait();
    return {};
  }
  std::vector<core::ChromeTrace> traces;
  for (int r = 0; r < comm.size(); ++r) {
    traces.push_back(r == root ? local
                               : core::ChromeTrace::from_json(nlohmann::json::parse(
                                     tensor_to_string(recv_tensor(comm, r, kGatherTag)))));
  }
  return core::ChromeTrace::merge(traces);
}

PipelineTraceRecorder::PipelineTraceRecorder(CommunicatorPtr comm, int pid)
    : comm_(std::move(comm)), pid_(pid) {
  STRATA_CHECK(comm_ != nullptr, "pipeline trace recorder: communicator is null");
}

void PipelineTraceRecorder::add_step(const PipelineExecutor& executor, int step) {
  add_step(std::vector<const PipelineExecutor*>{&executor}, step);
}

void PipelineTraceRecorder::add_step(const std::vector<const PipelineExecutor*>& executors,
                                     int step) {
  const auto start_us = [](const PipelineExecutor* executor) {
    return std::chrono::duration<double, std::micro>(executor->step_start().time_since_epoch())
        .count();
  };
  if (steps_ == 0) {
    // steady_clock is one clock for every process of a host: the earliest rank's start of
    // the first step is the trace's zero, and every rank's boxes line up against it.
    double earliest = start_us(executors.at(0));
    for (const PipelineExecutor* executor : executors)
      earliest = std::min(earliest, start_us(executor));
    at::Tensor origin = at::full({1}, earliest, at::kDouble);
    comm_->allreduce(origin, ReduceOp::Min)->wait();
    origin_us_ = origin.item<double>();
  }
  for (size_t i = 0; i < executors.size(); ++i)
    add_pipeline_records(trace_, executors[i]->records(), pid_ + static_cast<int>(i),
                         start_us(executors[i]) - origin_us_, step);
  if (const auto simulated = replay_records(executors)) {
    std::vector<std::string> devices;
    for (const PipelineExecutor* executor : executors)
      devices.push_back(executor->options().device().str());
    add_simulated_records(trace_, executors[0]->schedule(), *simulated, devices, simulated_us_,
                          step);
    simulated_us_ += simulated->makespan * 1e6;
  }
  ++steps_;
}

void PipelineTraceRecorder::write(const std::string& path, int root) {
  const core::ChromeTrace merged = gather_trace(*comm_, trace_, root);
  if (comm_->rank() == root) merged.write(path);
}

}  // namespace strata::parallel
