#pragma once
// What an instruction costs in another time than the wall clock: the bridge from the
// pipeline to simulated devices (ARCHITECTURE.md, "Devices"). The pipeline knows devices
// only as c10::Devices, and `parallel` does not include `accel`; a program that puts
// stages on simulated accelerators implements this interface (programs/simulated_time.h
// charges each instruction to the Simulator's cost models) and installs it on the
// pipeline (PipelineParallel::set_instruction_clock). The executor calls it around every
// instruction on the rank's own thread; replay_records (schedule.h) then plays the
// schedule on those durations.

#include <cstdint>
#include <memory>

#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

class InstructionClock {
 public:
  virtual ~InstructionClock() = default;
  // Right before pipeline rank `rank` runs `instruction`, on that rank's thread. Calls of
  // different ranks come from different threads at once (an in-process pipeline); one
  // rank's calls never overlap.
  virtual void begin(int rank, const PipelineInstruction& instruction) = 0;
  // Right after it: the instruction's duration in seconds. For a send, `bytes` is what it
  // hands to the peer and the duration is the time the data takes over the link to the
  // peer (the sender does not wait for it); 0 for every other instruction.
  virtual double end(int rank, const PipelineInstruction& instruction, int64_t bytes) = 0;
};

using InstructionClockPtr = std::shared_ptr<InstructionClock>;

}  // namespace strata::parallel
