#pragma once
// The pipeline executor: runs one rank's program of a verified PipelineSchedule on real
// model chunks, moving activations and gradients through a Communicator.
//
// Sends and receives are non-blocking: every receive is posted when the step starts
// (Communicator::irecv_tensor: over MPI its header, then its data as soon as the header is
// in), so transfers overlap compute; shapes may change from batch to batch. Each rank's
// stages live on one device (options().device()), and tensors are received onto it. The loss lives
// on the last stage and is scaled by 1/M exactly once; gradients accumulate over the micro-batches;
// the optimizer steps once per batch. Every instruction's start and end are recorded. Options add
// activation recomputation and weights tied across stages; SkipStash/SkipPop (skip.h) in the stages
// make skip connections across stages. See docs/pipeline.md, "Running a schedule" and
// "Recomputation, skip connections and tied weights". A stage may pass several tensors to the
// next (stage_io.h).

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/precision.h"
#include "strata/parallel/comm/communicator.h"
#include "strata/parallel/pipeline/instruction_clock.h"
#include "strata/parallel/pipeline/schedule.h"
#include "strata/parallel/pipeline/stage_io.h"

namespace strata::parallel {

// The loss of one micro-batch: the mean over its rows (the executor divides by M).
using PipelineLoss = std::function<at::Tensor(const at::Tensor& output, const at::Tensor& target)>;

// Which stages drop their activations after the forward and recompute them for the
// backward. Except-last spares the last global stage, whose backward follows its forward.
enum class Recompute { Never, Always, ExceptLast };

// Whether a training step synchronizes its gradients (sums tied copies across stages and
// averages over the data-parallel replicas) or only accumulates them locally, for a
// later step to synchronize: DistributedDataParallel's no_sync, for pipelines.
enum class GradientSync { Synchronize, Accumulate };
std::string to_string(Recompute recompute);  // "never", "always", "except_last"
Recompute parse_recompute(const std::string& text);

struct PipelineExecutorOptions {
  // Recomputed stages run their forward under NoGradGuard, keeping only their input (and
  // the RNG state, so that dropout recomputes the same mask); the backward (for ZB-H1, B)
  // first runs the forward again with autograd.
  TORCH_ARG(Recompute, recompute) = Recompute::Never;
  // Groups of whole-model parameter names that are one tied weight (e.g. {"0.weight",
  // "9.weight"}); find_tied_parameters lists them for a model that shares the tensor.
  // Every copy starts from the value of the lowest rank holding one, and at
  // all-reduce-grads every copy's .grad becomes the sum of every use's gradient.
  TORCH_ARG(std::vector<std::vector<std::string>>, tied_parameters) = {};
  // Where this rank's stages live: their parameters must be there already; stage 0's
  // micro-batches and the last stage's targets are copied there, and every tensor from
  // another rank is received there (irecv_tensor). CPU, a simulated accelerator
  // (PrivateUse1) or CUDA; the executor knows it only as a c10::Device.
  TORCH_ARG(c10::Device, device) = c10::kCPU;
  // The compute precision (core/precision.h): with bf16 every forward (and recomputed
  // forward) runs under autocast, the loss in fp32, the weights cast once per step; and
  // the fp32 activations and their gradients between stages travel in bf16, half the
  // bytes, restored to fp32 on arrival (skip tensors travel as they are).
  TORCH_ARG(core::Precision, precision) = core::Precision::Fp32;
};

// Parameters shared by several names in `model` (the same tensor registered twice), as
// groups of names in named_parameters() order.
std::vector<std::vector<std::string>> find_tied_parameters(const torch::nn::Module& model);

struct PipelineInstructionRecord {
  PipelineInstruction instruction;
  double start = 0, end = 0;  // seconds since train_step began (steady clock)
  // Its duration on the installed InstructionClock (simulated seconds; for a send, the
  // time on the link), or -1 without one.
  double simulated = -1;
};

class PipelineExecutor {
 public:
  // `stages`: this rank's model chunks by global stage index (rank r owns stages r,
  // r + K, ...; split_sequential makes them). `comm`: the pipeline group, whose rank i is
  // pipeline rank i. The schedule is verified here, and checked against the stages and
  // the communicator; mistakes raise strata::Error. Construction is collective over `comm`
  // (ranks exchange which stage stashes and pops which skip, and who holds which tied
  // parameter), so every rank must construct its executor.
  PipelineExecutor(std::map<int, torch::nn::Sequential> stages, CommunicatorPtr comm,
                   PipelineSchedule schedule, PipelineLoss loss,
                   PipelineExecutorOptions options = {});
  ~PipelineExecutor();
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  // One training step over `inputs`, split into M equal micro-batches along dim 0 (a
  // batch that M does not divide raises strata::Error). Every rank passes the same
  // inputs and targets; only the first and last stage's ranks read them. Gradients are
  // added to the parameters' .grad (zero them before, as after loss.backward()). At
  // optimizer-step, calls optimizer->step() when an optimizer is given. Returns the mean
  // of the micro-batch losses (for a mean loss, the loss of the whole batch) on every
  // rank. With GradientSync::Accumulate the all-reduce-grads instruction does nothing
  // (and no optimizer may be given): the gradients of several steps add up locally, and
  // the last one, with Synchronize, sums tied copies and averages over replicas once.
  double train_step(const at::Tensor& inputs, const at::Tensor& targets,
                    torch::optim::Optimizer* optimizer = nullptr,
                    GradientSync sync = GradientSync::Synchronize);

  // The last step's instructions in execution order, one record each.
  const std::vector<PipelineInstructionRecord>& records() const { return records_; }

  // Called at all-reduce-grads (data parallelism plugs in here); nothing by default.
  void set_gradient_sync(std::function<void()> hook) { gradient_sync_ = std::move(hook); }
  // Times every instruction of the next steps also on `clock` (nullptr: none), into
  // records()' `simulated`.
  void set_instruction_clock(InstructionClockPtr clock) { clock_ = std::move(clock); }

  const PipelineSchedule& schedule() const { return schedule_; }
  const PipelineExecutorOptions& options() const { return options_; }

  // When the last train_step began (records() are relative to it).
  std::chrono::steady_clock::time_point step_start() const { return step_start_; }

  // The most bytes of activations this rank held at once during the last step. An
  // estimate from tensor sizes, not an allocator measurement: per (stage, micro-batch)
  // between its forward and its backward, the stage's input and output and the skip
  // tensors it received or stashed, plus, while autograd keeps the stage's graph (from
  // the forward, or for a recomputed stage from the recomputation, to the backward), the
  // output of every layer (a layer whose output shares its input's memory counts 0).
  int64_t peak_saved_bytes() const { return peak_saved_bytes_; }

 private:
  using Key = std::pair<int, int>;  // (stage, micro-batch)
  struct Saved;                     // one (stage, micro-batch) between forward and backward
  struct SkipRoute;                 // a skip tensor stashed in one stage, popped in another
  struct TiedGroup;                 // this rank's copies of one tied weight

  // Collective parts of construction: the skip routes and the tied-weight groups.
  void exchange_stage_contents();
  // Every parameter and buffer of this rank's stages is on options().device().
  void check_placement() const;
  bool recomputes(int stage) const;
  void run(const PipelineInstruction& in, torch::optim::Optimizer* optimizer);
  // Runs the stage's layers (and, on the last stage, the loss) on saved.input with the
  // received skip tensors on the tray; fills saved.output and what the backward needs.
  // Returns the micro-batch's unscaled loss on the last stage, nothing elsewhere.
  at::Tensor compute(int stage, int micro_batch, Saved& saved);
  // For a recomputed stage: runs compute again with autograd and the forward's RNG state.
  void ensure_graph(int stage, int micro_batch, Saved& saved);
  void hold(Saved& saved, int64_t bytes);
  void release(int stage, int micro_batch);  // drops a (stage, micro-batch)'s saved tensors
  void sync_tied_gradients();
  void forward(int stage, int micro_batch);
  void backward(int stage, int micro_batch);
  void backward_input(int stage, int micro_batch);
  void backward_weight(int stage, int micro_batch);
  void send(const PipelineInstruction& in);
  void receive(const PipelineInstruction& in);
  void post_receive(int source, int tag);
  void post_receives();
  void progress_receives();
  pipeline_detail::StageValue complete_receive(int tag);
  int skip_tag(bool gradient, int route, int micro_batch) const;
  // The roots and their gradients for the backward of a stage: its output and the skip
  // tensors it stashed (their gradients come from the popping stages).
  void backward_roots(int stage, int micro_batch, std::vector<at::Tensor>& roots,
                      std::vector<at::Tensor>& gradients);
  // Hands the gradients of the skip tensors the stage popped back to the stashing stages.
  void publish_skip_gradients(int micro_batch, Saved& saved, const std::vector<at::Tensor>& grads);
  // The gradients of the stage's floating outputs: received (or made locally) from the
  // next stage, or 1 for the last stage's scaled loss.
  std::vector<at::Tensor> output_gradients(int stage, int micro_batch);
  // Hands the gradients of the stage's floating inputs to the previous stage (nothing for
  // stage 0); an undefined one (the output does not depend on that input) goes as zeros.
  void publish_input_gradients(int stage, int micro_batch, std::vector<at::Tensor> gradients);
  // The floating tensors of the stage's input (leaves), whose gradients go back; none on
  // stage 0.
  std::vector<at::Tensor> gradient_inputs(int stage, int micro_batch) const;
  void isend(const pipeline_detail::StageValue& value, int peer, int tag);

  std::map<int, torch::nn::Sequential> stages_;
  CommunicatorPtr comm_;
  PipelineSchedule schedule_;
  PipelineLoss loss_;
  PipelineExecutorOptions options_;
  std::function<void()> gradient_sync_;
  InstructionClockPtr clock_;
  int64_t sent_bytes_ = 0;                         // by the instruction running now
  GradientSync sync_ = GradientSync::Synchronize;  // this step's
  std::vector<PipelineInstructionRecord> records_;
  bool split_backward_ = false;  // the program has B and W passes
  std::vector<SkipRoute> skip_routes_;
  std::set<int> shared_weight_stages_;  // this rank's stages using a tensor in several layers
  std::vector<TiedGroup> tied_groups_;

  // Per step.
  std::vector<at::Tensor> input_chunks_, target_chunks_;
  std::map<Key, std::unique_ptr<Saved>> saved_;
  // A stage's output, keyed by that stage; the gradients of a stage's floating inputs, by
  // that stage (one tensor for a single floating input, a list otherwise).
  std::map<Key, pipeline_detail::StageValue> activations_, gradients_;
  std::map<Key, at::Tensor> skip_activations_;  // keyed by (route, micro-batch)
  std::map<Key, at::Tensor> skip_gradients_;    // keyed by (route, micro-batch)
  std::map<int, TensorWorkPtr> receives_;       // by message tag
  std::vector<WorkPtr> sends_;
  at::Tensor loss_sum_;
  std::chrono::steady_clock::time_point step_start_;
  int64_t saved_bytes_ = 0, peak_saved_bytes_ = 0;
};

}  // namespace strata::parallel
