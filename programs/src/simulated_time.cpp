#include "strata/programs/simulated_time.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/trace.h"

namespace strata::programs {

namespace {

const accel::AcceleratorSpec* spec_of(const StageDevice& device) {
  return device.spec ? &*device.spec : nullptr;
}

double seconds_at(int64_t cycles, const accel::AcceleratorSpec& spec) {
  return static_cast<double>(cycles) / (spec.clock_mhz * 1e6);
}

}  // namespace

void check_stage_memory(const parallel::PipelineParallel& pipeline,
                        const std::vector<StageDevice>& devices) {
  const auto& stages = pipeline.partition().stages;
  const int ranks = static_cast<int>(devices.size());
  for (int r = 0; r < ranks; ++r) {
    const auto& spec = devices[r].spec;
    if (!spec || spec->memory_mib <= 0) continue;
    int64_t needed = 0;
    std::string names;
    for (size_t s = r; s < stages.size(); s += ranks) {
      needed += stages[s].memory_bytes;
      names += fmt::format("{}{} (layers {}-{})", names.empty() ? "" : ", ", s, stages[s].begin,
                           stages[s].end - 1);
    }
    const auto available = static_cast<int64_t>(spec->memory_mib * 1024 * 1024);
    STRATA_CHECK(needed <= available, "--devices entry '", devices[r].name, "': stage ", names,
                 " needs ", needed,
                 " bytes (parameters, optimizer state and the schedule's activations in flight), "
                 "the device has ",
                 available, " (memory_mib ", spec->memory_mib,
                 "); use a larger device, more stages, fewer micro-batches in flight or a smaller "
                 "batch");
  }
}

SimulatedClock::SimulatedClock(std::shared_ptr<accel::Simulator> simulator,
                               std::vector<StageDevice> devices, LinkOptions link)
    : simulator_(std::move(simulator)),
      devices_(std::move(devices)),
      link_(link),
      ranks_(devices_.size()) {
  STRATA_CHECK(simulator_ != nullptr, "simulated clock: no simulator");
  STRATA_CHECK(link_.gbytes_per_s() >= 0 && link_.latency_us() >= 0,
               "simulated clock: link bandwidth ", link_.gbytes_per_s(), " GB/s and latency ",
               link_.latency_us(), " us, expected >= 0");
}

void SimulatedClock::begin(int rank, const parallel::PipelineInstruction&) {
  Rank& r = ranks_.at(rank);
  r.start = std::chrono::steady_clock::now();
  if (devices_[rank].spec) r.ops = simulator_->op_total(devices_[rank].device.index());
}

double SimulatedClock::end(int rank, const parallel::PipelineInstruction& in, int64_t bytes) {
  const Rank& r = ranks_.at(rank);
  const StageDevice& device = devices_[rank];
  if (in.op == parallel::PipelineOp::SendActivation || in.op == parallel::PipelineOp::SendGradient)
    return link_seconds(rank, in.peer, bytes);
  if (in.op == parallel::PipelineOp::RecvActivation || in.op == parallel::PipelineOp::RecvGradient)
    return 0;  // the data's time is on the link (the send's)
  if (!device.spec)
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
  const accel::OpCost now = simulator_->op_total(device.device.index());
  return seconds_at(now.cycles - r.ops.cycles, *device.spec);
}

double SimulatedClock::link_seconds(int from, int to, int64_t bytes) const {
  const accel::AcceleratorSpec* src = spec_of(devices_.at(from));
  const accel::AcceleratorSpec* dst = spec_of(devices_.at(to));
  if (!src && !dst) return 0;
  if (link_.gbytes_per_s() > 0)
    return link_.latency_us() * 1e-6 + static_cast<double>(bytes) / (link_.gbytes_per_s() * 1e9);
  // Charged at the receiving device's clock (the sender's for a copy to the CPU).
  const accel::OpCost cost = accel::transfer_cost(bytes, src, dst);
  return link_.latency_us() * 1e-6 + seconds_at(cost.cycles, dst ? *dst : *src);
}

SimulatedTime::SimulatedTime(parallel::PipelineParallel* pipeline,
                             const std::vector<StageDevice>& devices, LinkOptions link)
    : pipeline_(pipeline), devices_(devices) {
  if (pipeline_ != nullptr && devices.size() == pipeline_->devices().size())
    check_stage_memory(*pipeline_, devices);
  const bool simulated = std::any_of(devices.begin(), devices.end(),
                                     [](const StageDevice& d) { return d.spec.has_value(); });
  if (pipeline_ == nullptr || !simulated ||
      pipeline_->executors().size() != pipeline_->devices().size() ||
      devices.size() != pipeline_->devices().size())
    return;
  simulator_ = std::make_shared<accel::Simulator>();
  for (const StageDevice& d : devices)
    if (d.spec) simulator_->configure(d.device.index(), *d.spec);
  clock_ = std::make_shared<SimulatedClock>(simulator_, devices, link);
  pipeline_->set_instruction_clock(clock_);
  previous_recorder_ = accel::set_op_recorder(simulator_);
  busy_.assign(devices.size(), 0.0);
  macs_.assign(devices.size(), 0);
  macs_before_.assign(devices.size(), 0);
}

SimulatedTime::~SimulatedTime() {
  // The pipeline may be gone already (programs make it after the run); its executors keep
  // the clock, which keeps the simulator, and charge nothing once it is uninstalled.
  if (active()) accel::set_op_recorder(previous_recorder_);
}

double SimulatedTime::energy_pj() const {
  double pj = 0;
  for (const StageDevice& d : devices_)
    if (d.spec)
      pj += simulator_->op_total(d.device.index()).energy_pj() +
            simulator_->transfer_total(d.device.index()).energy_pj();
  return pj;
}

void SimulatedTime::record(int64_t step, int64_t first_measured_step, int64_t samples) {
  if (!active()) return;
  std::vector<int64_t> macs(devices_.size(), 0);
  for (size_t r = 0; r < devices_.size(); ++r)
    if (devices_[r].spec) macs[r] = simulator_->op_total(devices_[r].device.index()).macs;
  if (step < first_measured_step) {
    // What the warm-up spent is not the measured steps'.
    energy_before_pj_ = energy_pj();
    macs_before_ = macs;
    return;
  }
  const auto replayed = parallel::replay_records(pipeline_->executors());
  STRATA_CHECK(replayed.has_value(), "simulated time: step ", step,
               " has instructions without a simulated duration");
  measuring_ = true;
  seconds_ += replayed->makespan;
  samples_ += samples;
  for (size_t r = 0; r < busy_.size(); ++r) busy_[r] += replayed->busy[r];
  macs_ = macs;
  energy_after_pj_ = energy_pj();  // evaluation after the loop is not training
}

void SimulatedTime::add_fields(nlohmann::json& record) const {
  if (!active() || !measuring_ || seconds_ <= 0) return;
  std::vector<double> idle, utilization;
  std::vector<std::string> names;
  for (size_t r = 0; r < devices_.size(); ++r) {
    idle.push_back(1.0 - busy_[r] / seconds_);
    const auto& spec = devices_[r].spec;
    // MACs done over what the array could have done in the simulated time.
    utilization.push_back(spec
                              ? static_cast<double>(macs_[r] - macs_before_[r]) /
                                    (spec->peak_macs_per_cycle() * seconds_ * spec->clock_mhz * 1e6)
                              : 0.0);
    names.push_back(devices_[r].name);
  }
  record["simulated_samples_per_s"] = static_cast<double>(samples_) / seconds_;
  record["simulated_idle_fraction"] = idle;
  record["simulated_utilization"] = utilization;
  record["energy_uj"] = (energy_after_pj_ - energy_before_pj_) * 1e-6;
  record["device"] = names;
}

void SimulatedTime::log() const {
  nlohmann::json fields;
  add_fields(fields);
  if (fields.empty()) return;
  std::string idle;
  for (size_t r = 0; r < devices_.size(); ++r)
    idle += fmt::format("{}{} {:.1f}%", r == 0 ? "" : ", ", devices_[r].name,
                        100 * fields["simulated_idle_fraction"][r].get<double>());
  spdlog::info("simulated time: {:.1f} samples/s, idle per device: {}; {:.1f} uJ",
               fields["simulated_samples_per_s"].get<double>(), idle,
               fields["energy_uj"].get<double>());
}

}  // namespace strata::programs
