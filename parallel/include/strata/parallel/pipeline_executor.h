#pragma once
// The pipeline executor: runs one rank's program of a verified PipelineSchedule on real
// model chunks, moving activations and gradients through a Communicator.
//
// Sends and receives are non-blocking: every receive's header is posted when the step
// starts and its data as soon as the header is in, so transfers overlap compute; each
// tensor travels after a small header (dtype and shape), so shapes may change from batch
// to batch. The loss lives on the last stage and is scaled by 1/M exactly once;
// gradients accumulate over the micro-batches; the optimizer steps once per batch. Every
// instruction's start and end are recorded. See docs/pipeline.md, "Running a schedule".

#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "strata/parallel/communicator.h"
#include "strata/parallel/pipeline_schedule.h"

namespace strata::parallel {

// The loss of one micro-batch: the mean over its rows (the executor divides by M).
using PipelineLoss =
    std::function<at::Tensor(const at::Tensor& output, const at::Tensor& target)>;

struct PipelineInstructionRecord {
  PipelineInstruction instruction;
  double start = 0, end = 0;  // seconds since train_step began (steady clock)
};

class PipelineExecutor {
 public:
  // `stages`: this rank's model chunks by global stage index (rank r owns stages r,
  // r + K, ...; split_sequential makes them). `comm`: the pipeline group, whose rank i is
  // pipeline rank i. The schedule is verified here, and checked against the stages and
  // the communicator; mistakes raise strata::Error.
  PipelineExecutor(std::map<int, torch::nn::Sequential> stages, CommunicatorPtr comm,
                   PipelineSchedule schedule, PipelineLoss loss);
  ~PipelineExecutor();
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  // One training step over `inputs`, split into M equal micro-batches along dim 0 (a
  // batch that M does not divide raises strata::Error). Every rank passes the same
  // inputs and targets; only the first and last stage's ranks read them. Gradients are
  // added to the parameters' .grad (zero them before, as after loss.backward()). At
  // optimizer-step, calls optimizer->step() when an optimizer is given. Returns the mean
  // of the micro-batch losses (for a mean loss, the loss of the whole batch) on every
  // rank.
  double train_step(const at::Tensor& inputs, const at::Tensor& targets,
                    torch::optim::Optimizer* optimizer = nullptr);

  // The last step's instructions in execution order, one record each.
  const std::vector<PipelineInstructionRecord>& records() const { return records_; }

  // Called at all-reduce-grads (data parallelism plugs in here); nothing by default.
  void set_gradient_sync(std::function<void()> hook) { gradient_sync_ = std::move(hook); }

  const PipelineSchedule& schedule() const { return schedule_; }

 private:
  using Key = std::pair<int, int>;  // (stage, micro-batch)
  struct Saved;                     // one (stage, micro-batch) between forward and backward
  struct PendingRecv;               // one receive: its header, then its data

  void run(const PipelineInstruction& in, torch::optim::Optimizer* optimizer);
  void forward(int stage, int micro_batch);
  void backward(int stage, int micro_batch);
  void backward_input(int stage, int micro_batch);
  void backward_weight(int stage, int micro_batch);
  void send(const PipelineInstruction& in);
  void receive(const PipelineInstruction& in);
  void post_receives();
  void progress_receives();
  // The gradient of the stage's output: received (or made locally) from the next stage,
  // or 1 for the last stage's scaled loss.
  at::Tensor output_gradient(int stage, int micro_batch);
  // Hands the gradient of the stage's input to the previous stage (nothing for stage 0).
  void publish_input_gradient(int stage, int micro_batch, at::Tensor gradient);

  std::map<int, torch::nn::Sequential> stages_;
  CommunicatorPtr comm_;
  PipelineSchedule schedule_;
  PipelineLoss loss_;
  std::function<void()> gradient_sync_;
  std::vector<PipelineInstructionRecord> records_;
  bool split_backward_ = false;  // the program has B and W passes

  // Per step.
  std::vector<at::Tensor> input_chunks_, target_chunks_;
  std::map<Key, std::unique_ptr<Saved>> saved_;
  std::map<Key, at::Tensor> activations_;  // a stage's output, keyed by that stage
  std::map<Key, at::Tensor> gradients_;    // the gradient of a stage's input, by that stage
  std::map<std::pair<bool, Key>, std::unique_ptr<PendingRecv>> receives_;  // (is gradient, key)
  std::vector<WorkPtr> sends_;
  at::Tensor loss_sum_;
};

}  // namespace strata::parallel
