#pragma once
// Per-worker random numbers for the in-process pipeline (pipeline_parallel.cpp's
// DeviceWorkers). Under mpirun every rank is a process with LibTorch's default CPU
// generator to itself; in one process the worker threads would share it, so a rank's
// dropout masks would depend on how the threads interleave. Instead each worker gets a
// generator of its own, started from the default generator's state when the pipeline is
// built (what every mpirun rank has then), and the executor swaps it in around each
// forward (and recomputation) of the worker's stages, under one process-wide lock: the
// masks are those of mpirun, and a recomputation replays its forward's own draws.
// Private to the module.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <mutex>

namespace strata::parallel::pipeline_detail {

// This thread's generator (none: draw from the default one, as a process of its own).
void set_worker_generator(c10::optional<at::Generator> generator);

// While it lives, LibTorch's default CPU generator holds this thread's worker generator's
// state (and no other worker's forward runs); then the worker's state is saved back and
// the default's restored. Does nothing on a thread without a worker generator.
class WorkerGeneratorScope {
 public:
  WorkerGeneratorScope();
  ~WorkerGeneratorScope();
  WorkerGeneratorScope(const WorkerGeneratorScope&) = delete;
  WorkerGeneratorScope& operator=(const WorkerGeneratorScope&) = delete;

 private:
  std::unique_lock<std::mutex> lock_;
  at::Generator* worker_ = nullptr;
  at::Tensor default_state_;
};

}  // namespace strata::parallel::pipeline_detail
