#pragma once
// Pipeline parallelism for a torch::nn::Sequential, with data parallelism beside it: the
// one object a training program needs. It partitions the model (partition.h),
// keeps this rank's stages, runs them with a PipelineExecutor on the grid's pipeline
// group, all-reduces each stage's gradients over the grid's data-parallel group, and
// saves and loads checkpoints in the unpartitioned model's parameter names, so a run
// saved with one layout resumes with any other. Parameters the model shares between
// layers (a tied embedding and output head) are found and kept tied across stages.
//
//   strata::parallel::ProcessGrid grid(world, ProcessGridOptions().pipeline_parallel(2));
//   auto model = strata::core::make_fmnist_mlp();          // the same on every rank
//   PipelineParallel pipe(model, grid, cross_entropy, sample_batch,
//                         PipelineParallelOptions().schedule("1f1b").micro_batches(8));
//   torch::optim::SGD sgd(pipe.parameters(), 0.05);         // this rank's parameters
//   sgd.zero_grad();
//   double loss = pipe.train_step(images, labels, &sgd);    // this replica's batch
//
// See docs/pipeline.md, "Training with PipelineParallel".

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strata/parallel/data/process_grid.h"
#include "strata/parallel/pipeline/executor.h"
#include "strata/parallel/pipeline/partition.h"

namespace strata::parallel {

class InProcessCommunicator;
namespace pipeline_detail {
class DeviceWorkers;  // pipeline_parallel.cpp: one thread per in-process pipeline rank
}

// Moves a module's parameters and buffers to a device, in place (every handle to them sees
// the moved tensors). accel::to_device for simulated accelerators, whose device
// Module::to does not take in LibTorch 1.13.
using ModuleMover = std::function<void(torch::nn::Module& module, const c10::Device& device)>;

struct PipelineParallelOptions {
  // A registered schedule name (schedule_registry.h): "gpipe", "1f1b", "interleaved",
  // "zb-h1", or one the program registered.
  TORCH_ARG(std::string, schedule) = "1f1b";
  TORCH_ARG(int, micro_batches) = 4;
  // Model chunks per rank; more than 1 only for a schedule with virtual stages
  // ("interleaved").
  TORCH_ARG(int, virtual_stages) = 1;
  // Activation recomputation: never, always, or on every stage but the last.
  TORCH_ARG(Recompute, recompute) = Recompute::Never;
  // How to split the layers over the stages: "params", "time", "memory", "auto" (the
  // fastest split whose stages each need at most 1.25x the memory of the most
  // memory-balanced split), "adaptive" (start from "time", then re-partition the running
  // pipeline from what its layers cost in it: see rebalance()), or layers per stage as a
  // list "3,5".
  TORCH_ARG(std::string, balance) = "params";
  // Re-partition while training, from the layers' times in the running pipeline, starting
  // from the split `balance` names (balance "adaptive" is "time" with this on): after
  // adaptive_warmup_steps steps left alone (allocations, caches), the medians of each
  // layer's times over adaptive_window_steps steps make one rebalance() decision; rounds
  // go on until one moves nothing, at most adaptive_rounds times.
  TORCH_ARG(bool, adaptive) = false;
  TORCH_ARG(int, adaptive_warmup_steps) = 3;
  TORCH_ARG(int, adaptive_window_steps) = 5;
  TORCH_ARG(int, adaptive_rounds) = 3;
  // The least improvement of the slowest stage's predicted time that makes a move.
  TORCH_ARG(double, adaptive_min_gain) = 0.05;
  // When set, turns each window's measured layer times (seconds per micro-batch, the same
  // on every rank) into the table the decision uses: a cost model's correction, or a
  // test's known costs (sleeps are not exact on a busy machine). Must return the same
  // table on every rank.
  TORCH_ARG(std::function<std::vector<double>(const std::vector<double>&)>,
            adaptive_costs) = nullptr;
  // Bucket size of the data-parallel gradient all-reduce.
  TORCH_ARG(int64_t, bucket_cap_bytes) = 25 * 1024 * 1024;
  // Bytes of optimizer state per parameter byte, for the partitioner's memory model.
  TORCH_ARG(double, optimizer_state_factor) = 1;
  // Names (in the whole model) of expert parameters spread over the grid's expert-parallel
  // group (strata::moe::expert_parameter_names): each rank of a stage's expert group holds
  // its slice of the stage's experts. Their gradients are summed over the ranks holding
  // the same experts and divided by the data-parallel size (the mean over all tokens, as
  // DistributedDataParallel does); checkpoints hold the whole stacks.
  TORCH_ARG(std::vector<std::string>, expert_parameters) = {};
  // The device of each pipeline rank (its stages, virtual ones included, live there), or
  // one for all; empty: the CPU. With a grid whose pipeline group is one rank, K > 1
  // devices make an in-process pipeline: the K pipeline ranks run in this process, one
  // worker thread per device, each a rank of an in-process group (tensors cross between
  // stages as one device-to-device copy). Under mpirun each rank's stages go to the
  // device of its pipeline rank.
  TORCH_ARG(std::vector<c10::Device>, devices) = {};
  // How stages move to their devices; unset: Module::to.
  TORCH_ARG(ModuleMover, move_module) = nullptr;
  // The compute precision (core/precision.h, docs/precision.md): with bf16 the forward
  // runs under autocast with fp32 master weights, and activations and their gradients
  // travel between stages in bf16. Acts with or without a pipeline.
  TORCH_ARG(core::Precision, precision) = core::Precision::Fp32;
  // The dtype of the data-parallel gradient all-reduce (DistributedDataParallelOptions::
  // reduce_dtype): none, the compute precision's (bf16 with bf16: half the bytes, measured
  // faster in docs/precision.md; the gradients' own with fp32). Acts with or without a
  // pipeline.
  TORCH_ARG(c10::optional<at::ScalarType>, grad_reduce_dtype) = c10::nullopt;
};

// The dtype `options` reduce floating gradients in: grad_reduce_dtype, or without one
// bf16 for bf16 compute and none (each gradient's own) otherwise.
c10::optional<at::ScalarType> gradient_reduce_dtype(const PipelineParallelOptions& options);

class PipelineParallel {
 public:
  // Collective over grid.world(). `model` must be the same on every rank (the same
  // layers, built from the same seed); `sample_batch` is one replica's batch (or any batch
  // of the same row shape), used to profile the layers. Every rank profiles, the layer
  // times are averaged over the ranks, and every rank partitions that one profile, so the
  // split is the same everywhere. Raises strata::Error (on every rank) for a partition or
  // schedule that cannot be.
  PipelineParallel(torch::nn::Sequential model, const ProcessGrid& grid, PipelineLoss loss,
                   const at::Tensor& sample_batch, PipelineParallelOptions options = {});
  ~PipelineParallel();
  PipelineParallel(const PipelineParallel&) = delete;
  PipelineParallel& operator=(const PipelineParallel&) = delete;

  // This rank's parameters, each once (give these to the optimizer).
  std::vector<at::Tensor> parameters() const;
  // This rank's layers under their names in the whole model ("3.weight", not "0.weight").
  torch::nn::Module& local_module() { return *local_; }
  const std::map<int, torch::nn::Sequential>& stages() const { return stages_; }

  // One step on this replica's batch (the global batch / data-parallel size): forward and
  // backward of M micro-batches through the pipeline, gradients averaged over the
  // data-parallel group, then optimizer->step() when given. Gradients add to .grad: zero
  // them before. Returns the mean loss of this replica's batch on every rank of its
  // pipeline (average it over data_parallel() for the global batch's).
  // GradientSync::Accumulate leaves the gradients unsynchronized, to add more before a
  // synchronizing step (PipelineExecutor::train_step).
  double train_step(const at::Tensor& inputs, const at::Tensor& targets,
                    torch::optim::Optimizer* optimizer = nullptr,
                    GradientSync sync = GradientSync::Synchronize);

  // The model's output for `inputs` (no gradients, eval mode), on every rank of this
  // pipeline: each stage runs its layers and passes the result on.
  at::Tensor evaluate(const at::Tensor& inputs);

  // Collective: every rank calls it. The first replica's stages send their tensors and
  // optimizer state to world rank 0, which writes one checkpoint in the whole model's
  // names (core/checkpoint.h), loadable with any pipeline and data-parallel size.
  void save_checkpoint(const std::string& path, torch::optim::Optimizer* optimizer, int64_t step,
                       const nlohmann::json& extra = {});
  // Every rank loads its own layers (and their optimizer state) from a checkpoint of the
  // whole model; returns its step.
  int64_t load_checkpoint(const std::string& path, torch::optim::Optimizer* optimizer,
                          nlohmann::json* extra = nullptr);

  // Adaptive balance (docs/pipeline.md, "--balance adaptive"). Each layer's compute per
  // micro-batch as the last train_step ran it: each stage's forward and backward passes
  // from its executor's instruction records (summed, divided by the micro-batches), shared
  // among the stage's layers in proportion to their isolated profile; summed over the
  // pipeline group and averaged over the data-parallel group, so that every rank of every
  // replica gets the same table. Collective over the world.
  std::vector<double> measured_layer_times() const;
  // Prices the current split and the dynamic program's best split (core/layer_partition.h)
  // with `layer_times` (seconds per micro-batch, one per layer, the same on every rank);
  // when the best one's slowest stage is at least `min_gain` (a fraction) faster, moves to
  // it with repartition(), logs one line (step, old and new split, predicted slowest stage)
  // and returns true. Collective over the world.
  bool rebalance(const std::vector<double>& layer_times, torch::optim::Optimizer* optimizer,
                 int64_t step, double min_gain = 0.05);
  // Moves to `balance` (layers per stage) in place: each layer that changes rank is sent,
  // with its parameters, buffers and its state in `optimizer` (SGD, Adam or AdamW with one
  // param group holding exactly parameters(); may be null), to its new rank, by name as a
  // checkpoint holds them; the stages and executors are rebuilt on the new split, and the
  // optimizer then holds the new parameters(). Collective over the world. Pipelines with
  // one stage per rank, without tied parameters across ranks or expert parameters.
  void repartition(const std::vector<int64_t>& balance, torch::optim::Optimizer* optimizer);

  const PipelinePartition& partition() const { return partition_; }
  // This process's first (under mpirun: its only) pipeline rank's executor.
  PipelineExecutor& executor() { return *executors_.at(0); }
  // The executors of the pipeline ranks in this process, by pipeline rank: one under
  // mpirun, K for an in-process pipeline.
  std::vector<const PipelineExecutor*> executors() const;
  // Installs `clock` on every executor of this process (InstructionClock: simulated
  // devices time each instruction there); nullptr removes it.
  void set_instruction_clock(const InstructionClockPtr& clock);
  // The pipeline rank of executors()[0].
  int first_pipeline_rank() const { return first_rank_; }
  // The device of each pipeline rank (one entry per rank).
  const std::vector<c10::Device>& devices() const { return devices_; }
  const ProcessGrid& grid() const { return grid_; }

 private:
  void synchronize_gradients();
  // Builds stages_, local_ and the executors on partition_ (at construction and after a
  // repartition).
  void install_partition();
  // balance "adaptive": after each synchronizing step, gathers this step's layer times
  // and, at the end of a window, makes one rebalance() decision.
  void adapt(torch::optim::Optimizer* optimizer);
  // measured_layer_times() in two halves: this process's layers from its executors'
  // records (zero for the others), and the collective that makes one table of them.
  std::vector<double> local_layer_times() const;
  std::vector<double> agree_on_layer_times(const std::vector<double>& mine) const;
  // This rank's expert parameters, and the rest, each once.
  std::vector<at::Tensor> expert_parameters() const;
  std::vector<at::Tensor> dense_parameters() const;

  ProcessGrid grid_;
  PipelineParallelOptions options_;
  PipelinePartition partition_;
  // Kept for re-partitioning: the whole model (every rank builds all of it; a rank's
  // layers outside its stages are not trained and not read), the schedule, the loss, the
  // tied parameters, the isolated profile and the memory model.
  torch::nn::Sequential model_;
  PipelineSchedule schedule_;
  PipelineLoss loss_;
  std::vector<std::vector<std::string>> tied_;
  std::vector<LayerProfile> profile_;
  // In one process, when the model draws random numbers: the default generator's state
  // at construction, each worker's generator's start (worker_generator.h).
  c10::optional<at::Tensor> worker_generator_state_;
  MemoryModel memory_;
  // balance "adaptive": steps seen, this window's layer times (one vector per step) and
  // the rounds done; done_adapting_ once a round moved nothing or the rounds ran out.
  int64_t steps_ = 0;  // synchronizing train_steps so far
  int64_t adaptive_steps_ = 0;
  std::vector<std::vector<double>> window_times_;
  int adaptive_round_ = 0;
  bool done_adapting_ = true;
  std::map<int, torch::nn::Sequential> stages_;
  std::shared_ptr<torch::nn::Module> local_;
  std::vector<c10::Device> devices_;
  int first_rank_ = 0;
  // In-process pipelines only: the group's communicators and the worker threads, which
  // run executors_[r] on thread r (destroyed first: the threads stop before the rest goes).
  std::vector<std::shared_ptr<InProcessCommunicator>> in_process_;
  std::vector<std::unique_ptr<PipelineExecutor>> executors_;
  std::unique_ptr<pipeline_detail::DeviceWorkers> workers_;
};

// The partition `balance` names ("params", "time", "memory", "auto" or a list of layer
// counts "3,5") for `stages` stages of `layers`, with the memory model of `schedule`
// (how many micro-batches each stage holds: schedule_in_flight, from simulating the
// schedule on `ranks` ranks with stages / ranks chunks each, M = `micro_batches`). With
// fewer `ranks` than stages (interleaved), "params" and "time" balance each rank's total
// (partition_rank_balanced); 0: one stage per rank.
PipelinePartition choose_partition(const std::vector<LayerProfile>& layers,
                                   const std::string& balance, int stages,
                                   const std::string& schedule, int micro_batches,
                                   double optimizer_state_factor = 1, int ranks = 0);

}  // namespace strata::parallel
