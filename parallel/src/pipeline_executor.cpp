// PipelineExecutor: one rank's program of a schedule, instruction by instruction.
//
// Tensors between stages are keyed by the stage that produced them, as the schedule's
// transfers are: activations_[(s, m)] is stage s's output, gradients_[(s, m)] the gradient
// of stage s's input. A forward or backward puts its result there; a send takes it from
// there, a receive puts it there, so stages on one rank hand tensors over without a
// transfer and the compute code does not care where a tensor came from.
#include "strata/parallel/pipeline_executor.h"

#include <torch/autograd.h>

#include <chrono>

#include "strata/core/error.h"

namespace strata::parallel {

namespace {

// The header that goes before each tensor: dtype, number of dims, then the sizes.
constexpr int64_t kMaxDims = 8;
constexpr int64_t kHeaderLength = 2 + kMaxDims;
// MPI guarantees tags up to 32767 (MPI_TAG_UB may be larger, but need not be).
constexpr int64_t kMaxTag = 32767;

// One tag per message: (stage, micro-batch, kind). The header and the data of a message
// share it: messages with one (source, destination, tag) arrive in the order sent.
int message_tag(bool gradient, int stage, int micro_batch, int micro_batches) {
  return static_cast<int>((static_cast<int64_t>(stage) * micro_batches + micro_batch) * 2 +
                          (gradient ? 1 : 0));
}

at::Tensor make_header(const at::Tensor& tensor) {
  STRATA_CHECK(tensor.dim() <= kMaxDims, "pipeline executor: a tensor sent between stages has ",
               tensor.dim(), " dims, expected at most ", kMaxDims);
  at::Tensor header = at::zeros({kHeaderLength}, at::kLong);
  auto h = header.accessor<int64_t, 1>();
  h[0] = static_cast<int64_t>(tensor.scalar_type());
  h[1] = tensor.dim();
  for (int64_t d = 0; d < tensor.dim(); ++d) h[2 + d] = tensor.size(d);
  return header;
}

at::Tensor allocate_from_header(const at::Tensor& header) {
  auto h = header.accessor<int64_t, 1>();
  std::vector<int64_t> sizes(h[1]);
  for (int64_t d = 0; d < h[1]; ++d) sizes[d] = h[2 + d];
  return at::empty(sizes, at::TensorOptions().dtype(static_cast<at::ScalarType>(h[0])));
}

std::vector<at::Tensor> trainable_parameters(const std::vector<at::Tensor>& all) {
  std::vector<at::Tensor> parameters;
  for (const auto& p : all)
    if (p.requires_grad()) parameters.push_back(p);
  return parameters;
}

// Adds `gradient` to the parameter's .grad, as backward() would.
void accumulate_gradient(at::Tensor& parameter, const at::Tensor& gradient) {
  if (!gradient.defined()) return;
  if (parameter.grad().defined())
    parameter.mutable_grad().add_(gradient);
  else
    parameter.mutable_grad() = gradient.clone();
}

}  // namespace

struct PipelineExecutor::Saved {
  at::Tensor input;   // a leaf; requires grad except on stage 0
  at::Tensor output;  // the stage's output; on the last stage, the scaled loss
  // For a split backward: the output of each layer with trainable parameters, its
  // parameters, and (from B) the gradient of that output. W then runs each such layer's
  // own backward node only, instead of autograd again through the whole stage.
  std::vector<at::Tensor> layer_outputs;
  std::vector<std::vector<at::Tensor>> layer_parameters;
  std::vector<at::Tensor> layer_output_gradients;
};

struct PipelineExecutor::PendingRecv {
  int source = -1, tag = 0;
  at::Tensor header, data;
  WorkPtr header_work, data_work;
};

PipelineExecutor::PipelineExecutor(std::map<int, torch::nn::Sequential> stages,
                                   CommunicatorPtr comm, PipelineSchedule schedule,
                                   PipelineLoss loss)
    : stages_(std::move(stages)),
      comm_(std::move(comm)),
      schedule_(std::move(schedule)),
      loss_(std::move(loss)) {
  STRATA_CHECK(comm_ != nullptr, "pipeline executor: communicator is null");
  STRATA_CHECK(static_cast<bool>(loss_), "pipeline executor: loss function is empty");
  verify_schedule(schedule_);
  STRATA_CHECK_EQ(comm_->size(), schedule_.num_ranks,
                  "pipeline executor: communicator size (the schedule's ranks)");
  const int rank = comm_->rank();
  for (int s = 0; s < schedule_.num_stages; ++s) {
    if (schedule_.rank_of_stage(s) != rank) continue;
    auto it = stages_.find(s);
    STRATA_CHECK(it != stages_.end() && !it->second.is_empty(), "pipeline executor: rank ", rank,
                 " runs stage ", s, " of schedule '", schedule_.name,
                 "' but no module was given for it");
  }
  for (const auto& [s, module] : stages_)
    STRATA_CHECK(s >= 0 && s < schedule_.num_stages && schedule_.rank_of_stage(s) == rank,
                 "pipeline executor: stage ", s, " given to rank ", rank, ", expected one of rank ",
                 rank, "'s stages (s % ", schedule_.num_ranks, " == ", rank, ", s < ",
                 schedule_.num_stages, ")");
  for (const auto& in : schedule_.ranks[rank])
    if (in.op == PipelineOp::BackwardInput) split_backward_ = true;
  const int64_t tags = int64_t{schedule_.num_stages} * schedule_.num_micro_batches * 2;
  STRATA_CHECK(tags - 1 <= kMaxTag, "pipeline executor: stages * micro-batches * 2 = ", tags,
               " message tags, expected at most ", kMaxTag + 1,
               " (the MPI tag limit): use fewer micro-batches or stages");
}

PipelineExecutor::~PipelineExecutor() = default;

double PipelineExecutor::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                    torch::optim::Optimizer* optimizer) {
  const int m = schedule_.num_micro_batches;
  STRATA_CHECK(inputs.dim() >= 1 && inputs.size(0) % m == 0,
               "pipeline executor: batch size ", inputs.dim() >= 1 ? inputs.size(0) : 0,
               " is not a multiple of the ", m, " micro-batches");
  STRATA_CHECK_EQ(targets.size(0), inputs.size(0), "pipeline executor: targets' batch size");
  input_chunks_ = inputs.chunk(m, 0);
  target_chunks_ = targets.chunk(m, 0);
  saved_.clear();
  activations_.clear();
  gradients_.clear();
  receives_.clear();
  sends_.clear();
  records_.clear();
  loss_sum_ = at::zeros({}, at::kDouble);

  const auto begin = std::chrono::steady_clock::now();
  const auto seconds = [&begin] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  };
  post_receives();
  for (const auto& in : schedule_.ranks[comm_->rank()]) {
    progress_receives();
    const double start = seconds();
    run(in, optimizer);
    records_.push_back({in, start, seconds()});
  }
  for (auto& work : sends_) work->wait();
  sends_.clear();

  // The loss is known on the last stage's rank; every rank returns it.
  at::Tensor loss = loss_sum_ / m;
  comm_->broadcast(loss, schedule_.rank_of_stage(schedule_.num_stages - 1))->wait();
  input_chunks_.clear();
  target_chunks_.clear();
  return loss.item<double>();
}

void PipelineExecutor::run(const PipelineInstruction& in, torch::optim::Optimizer* optimizer) {
  switch (in.op) {
    case PipelineOp::Forward: return forward(in.stage, in.micro_batch);
    case PipelineOp::Backward: return backward(in.stage, in.micro_batch);
    case PipelineOp::BackwardInput: return backward_input(in.stage, in.micro_batch);
    case PipelineOp::BackwardWeight: return backward_weight(in.stage, in.micro_batch);
    case PipelineOp::SendActivation:
    case PipelineOp::SendGradient: return send(in);
    case PipelineOp::RecvActivation:
    case PipelineOp::RecvGradient: return receive(in);
    case PipelineOp::AllReduceGradients:
      if (gradient_sync_) gradient_sync_();
      return;
    case PipelineOp::OptimizerStep:
      if (optimizer != nullptr) optimizer->step();
      return;
  }
}

void PipelineExecutor::forward(int stage, int micro_batch) {
  auto saved = std::make_unique<Saved>();
  if (stage == 0) {
    saved->input = input_chunks_[micro_batch];
  } else {
    auto it = activations_.find({stage - 1, micro_batch});
    // verify_schedule guarantees it is there; a failure here is an executor bug.
    STRATA_CHECK(it != activations_.end(), "pipeline executor: no activation of stage ",
                 stage - 1, ", micro-batch ", micro_batch, " for the forward of stage ", stage);
    // A leaf of this stage's graph, so that its gradient is what goes back.
    saved->input = it->second.detach().requires_grad_(true);
    activations_.erase(it);
  }
  at::Tensor output;
  if (split_backward_) {
    // Layer by layer, as Sequential::forward does, keeping what W needs.
    output = saved->input;
    for (auto& layer : *stages_.at(stage)) {
      output = layer.forward(output);
      std::vector<at::Tensor> parameters = trainable_parameters(layer.ptr()->parameters());
      if (parameters.empty() || !output.requires_grad()) continue;
      saved->layer_outputs.push_back(output);
      saved->layer_parameters.push_back(std::move(parameters));
    }
  } else {
    output = stages_.at(stage)->forward(saved->input);
  }
  if (stage == schedule_.num_stages - 1) {
    at::Tensor loss = loss_(output, target_chunks_[micro_batch]);
    loss_sum_ += loss.detach().to(at::kDouble).cpu();
    // The one place the loss is scaled: gradients summed over M micro-batches are then
    // the gradient of the batch's mean loss.
    saved->output = loss / schedule_.num_micro_batches;
  } else {
    saved->output = output;
    activations_[{stage, micro_batch}] = output.detach();
  }
  saved_[{stage, micro_batch}] = std::move(saved);
}

at::Tensor PipelineExecutor::output_gradient(int stage, int micro_batch) {
  Saved& saved = *saved_.at({stage, micro_batch});
  if (stage == schedule_.num_stages - 1) return at::ones_like(saved.output);
  auto it = gradients_.find({stage + 1, micro_batch});
  STRATA_CHECK(it != gradients_.end(), "pipeline executor: no gradient of stage ", stage + 1,
               ", micro-batch ", micro_batch, " for the backward of stage ", stage);
  at::Tensor gradient = it->second;
  gradients_.erase(it);
  return gradient;
}

void PipelineExecutor::publish_input_gradient(int stage, int micro_batch, at::Tensor gradient) {
  if (stage == 0) return;
  const at::Tensor& input = saved_.at({stage, micro_batch})->input;
  // A stage whose output does not depend on its input (or only through integer ops)
  // still owes the previous stage a gradient: zero.
  gradients_[{stage, micro_batch}] = gradient.defined() ? gradient : at::zeros_like(input);
}

void PipelineExecutor::backward(int stage, int micro_batch) {
  at::Tensor gradient = output_gradient(stage, micro_batch);
  auto it = saved_.find({stage, micro_batch});
  Saved& saved = *it->second;
  if (saved.output.requires_grad()) torch::autograd::backward({saved.output}, {gradient});
  publish_input_gradient(stage, micro_batch, stage == 0 ? at::Tensor() : saved.input.grad());
  saved_.erase(it);
}

void PipelineExecutor::backward_input(int stage, int micro_batch) {
  Saved& saved = *saved_.at({stage, micro_batch});
  const at::Tensor output_grad = output_gradient(stage, micro_batch);
  // One autograd pass for the input's gradient and, on the way, the gradients of the
  // layer outputs W starts from; the graph stays for W.
  std::vector<at::Tensor> targets = saved.layer_outputs;
  if (stage > 0) targets.push_back(saved.input);
  at::Tensor input_gradient;
  if (!targets.empty() && saved.output.requires_grad()) {
    std::vector<at::Tensor> grads =
        torch::autograd::grad({saved.output}, targets, {output_grad}, /*retain_graph=*/true,
                              /*create_graph=*/false, /*allow_unused=*/true);
    if (stage > 0) {
      input_gradient = grads.back();
      grads.pop_back();
    }
    saved.layer_output_gradients = std::move(grads);
  }
  publish_input_gradient(stage, micro_batch, input_gradient);
}

void PipelineExecutor::backward_weight(int stage, int micro_batch) {
  auto it = saved_.find({stage, micro_batch});
  STRATA_CHECK(it != saved_.end(), "pipeline executor: W of stage ", stage, ", micro-batch ",
               micro_batch, " without its forward");
  Saved& saved = *it->second;
  for (size_t i = 0; i < saved.layer_output_gradients.size(); ++i) {
    if (!saved.layer_output_gradients[i].defined()) continue;
    std::vector<at::Tensor>& parameters = saved.layer_parameters[i];
    // retain_graph: a layer's node may sit on another layer's path (an in-place layer
    // after it rewrites its output's grad_fn); the graph goes with saved_ below.
    std::vector<at::Tensor> grads = torch::autograd::grad(
        {saved.layer_outputs[i]}, parameters, {saved.layer_output_gradients[i]},
        /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t p = 0; p < parameters.size(); ++p) accumulate_gradient(parameters[p], grads[p]);
  }
  saved_.erase(it);
}

void PipelineExecutor::send(const PipelineInstruction& in) {
  const bool gradient = in.op == PipelineOp::SendGradient;
  auto& store = gradient ? gradients_ : activations_;
  auto it = store.find({in.stage, in.micro_batch});
  STRATA_CHECK(it != store.end(), "pipeline executor: nothing to send for ", to_string(in));
  const at::Tensor data = it->second.contiguous();
  store.erase(it);
  const int tag = message_tag(gradient, in.stage, in.micro_batch, schedule_.num_micro_batches);
  // The Works keep both tensors alive until the sends complete (waited at the step's end).
  sends_.push_back(comm_->isend(make_header(data), in.peer, tag));
  sends_.push_back(comm_->isend(data, in.peer, tag));
}

void PipelineExecutor::post_receives() {
  for (const auto& in : schedule_.ranks[comm_->rank()]) {
    if (in.op != PipelineOp::RecvActivation && in.op != PipelineOp::RecvGradient) continue;
    const bool gradient = in.op == PipelineOp::RecvGradient;
    auto pending = std::make_unique<PendingRecv>();
    pending->source = in.peer;
    pending->tag = message_tag(gradient, in.stage, in.micro_batch, schedule_.num_micro_batches);
    pending->header = at::empty({kHeaderLength}, at::kLong);
    pending->header_work = comm_->irecv(pending->header, in.peer, pending->tag);
    receives_[{gradient, {in.stage, in.micro_batch}}] = std::move(pending);
  }
}

// Posts the data receive of every message whose header has arrived, so that the data
// moves while this rank computes.
void PipelineExecutor::progress_receives() {
  for (auto& [key, pending] : receives_) {
    if (pending->data_work || !pending->header_work->is_completed()) continue;
    pending->data = allocate_from_header(pending->header);
    pending->data_work = comm_->irecv(pending->data, pending->source, pending->tag);
  }
}

void PipelineExecutor::receive(const PipelineInstruction& in) {
  const bool gradient = in.op == PipelineOp::RecvGradient;
  auto it = receives_.find({gradient, {in.stage, in.micro_batch}});
  STRATA_CHECK(it != receives_.end(), "pipeline executor: no receive posted for ", to_string(in));
  PendingRecv& pending = *it->second;
  if (!pending.data_work) {
    pending.header_work->wait();
    pending.data = allocate_from_header(pending.header);
    pending.data_work = comm_->irecv(pending.data, pending.source, pending.tag);
  }
  pending.data_work->wait();
  (gradient ? gradients_ : activations_)[{in.stage, in.micro_batch}] = pending.data;
  receives_.erase(it);
}

}  // namespace strata::parallel
