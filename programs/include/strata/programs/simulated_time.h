#pragma once
// A pipeline whose stages run on simulated accelerators, in simulated time (docs/pipeline.md,
// "Stages on devices"). The pipeline times each instruction through its InstructionClock
// interface; SimulatedClock implements it with the accel Simulator's charges, so that
// neither parallel nor accel includes the other (ARCHITECTURE.md, "Devices"):
//   - a compute pass (and the optimizer step) takes the cycles its device's ops were
//     charged while it ran, at the device's clock. Ops are charged per device index, and a
//     device runs one instruction at a time, so the readings are right with every worker
//     thread (and the autograd engine's device threads) charging at once;
//   - a send takes the time its bytes need on the link between the two devices: the
//     slower end's DRAM bandwidth (accel::transfer_cost), or LinkOptions;
//   - an instruction of a rank on the CPU (or CUDA) takes its wall time.
// SimulatedTime does this for a whole run: installs the Simulator, puts the clock on the
// pipeline, replays every measured step's schedule on the durations and sums simulated
// samples/s, each device's idle fraction, utilization and energy for the final record.
//
//   SimulatedTime simulated(model.pipeline(), flags.devices);   // inactive without accel:
//   for (...) { model.train_step(...); simulated.record(step, first_measured, batch); }
//   simulated.add_fields(final_record);

#include <torch/arg.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "strata/accel/simulator.h"
#include "strata/parallel/pipeline/instruction_clock.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"
#include "strata/programs/stage_devices.h"

namespace strata::programs {

// The link between two pipeline ranks' devices. Bandwidth 0: the slower end's DRAM
// bandwidth, as accel::transfer_cost charges a copy.
struct LinkOptions {
  TORCH_ARG(double, gbytes_per_s) = 0;
  TORCH_ARG(double, latency_us) = 0;
};

// Every pipeline rank's stages fit its simulated device's memory (AcceleratorSpec::
// memory_mib; 0: unlimited): their parameters, optimizer state and the activations the
// schedule keeps in flight, as the partition's memory model counts them
// (StagePlan::memory_bytes). `devices`: one per pipeline rank. One strata::Error line
// naming the device, the stages, the bytes needed and the bytes available otherwise.
void check_stage_memory(const parallel::PipelineParallel& pipeline,
                        const std::vector<StageDevice>& devices);

class SimulatedClock : public parallel::InstructionClock {
 public:
  // `devices`: one per pipeline rank (parse_stage_devices); `simulator` charges the
  // simulated ones (configured with their specs by the caller).
  SimulatedClock(std::shared_ptr<accel::Simulator> simulator, std::vector<StageDevice> devices,
                 LinkOptions link = {});

  void begin(int rank, const parallel::PipelineInstruction& instruction) override;
  double end(int rank, const parallel::PipelineInstruction& instruction, int64_t bytes) override;

  // Seconds a copy of `bytes` from rank `from`'s device to rank `to`'s takes; 0 between
  // two ranks that are not simulated.
  double link_seconds(int from, int to, int64_t bytes) const;

 private:
  struct Rank {
    accel::OpCost ops;  // the device's op total at begin()
    std::chrono::steady_clock::time_point start;
  };
  std::shared_ptr<accel::Simulator> simulator_;
  std::vector<StageDevice> devices_;
  LinkOptions link_;
  std::vector<Rank> ranks_;  // each touched by its rank's thread only
};

class SimulatedTime {
 public:
  // Checks that the stages fit their devices (check_stage_memory), then is active when
  // some stage is on a simulated accelerator and the whole pipeline runs in this process (an
  // in-process pipeline); under mpirun each rank sees only its own instructions, and this does
  // nothing yet. While active, a Simulator is installed (accel::set_op_recorder) until it goes; the
  // pipeline keeps the clock.
  SimulatedTime(parallel::PipelineParallel* pipeline, const std::vector<StageDevice>& devices,
                LinkOptions link = {});
  ~SimulatedTime();
  SimulatedTime(const SimulatedTime&) = delete;
  SimulatedTime& operator=(const SimulatedTime&) = delete;

  bool active() const { return simulator_ != nullptr; }
  // After step `step` (of `samples` samples): replays it when step >= first_measured_step.
  void record(int64_t step, int64_t first_measured_step, int64_t samples);
  // The measured steps' simulated_samples_per_s, simulated_idle_fraction and
  // simulated_utilization (one per device), energy_uj (every device, transfers included)
  // and device (the names), added to `record`; nothing when inactive or nothing measured.
  void add_fields(nlohmann::json& record) const;
  // One log line of the same.
  void log() const;

  const std::shared_ptr<accel::Simulator>& simulator() const { return simulator_; }

 private:
  double energy_pj() const;  // every device's, so far

  parallel::PipelineParallel* pipeline_ = nullptr;
  std::vector<StageDevice> devices_;
  std::shared_ptr<accel::Simulator> simulator_;
  std::shared_ptr<SimulatedClock> clock_;
  std::shared_ptr<accel::OpRecorder> previous_recorder_;
  // Over the measured steps.
  double seconds_ = 0;
  int64_t samples_ = 0;
  std::vector<double> busy_;
  std::vector<int64_t> macs_, macs_before_;
  double energy_before_pj_ = 0, energy_after_pj_ = 0;
  bool measuring_ = false;
};

}  // namespace strata::programs
