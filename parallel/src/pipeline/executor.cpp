// PipelineExecutor: one rank's program of a schedule, instruction by instruction.
//
// Tensors between stages are keyed by the stage that produced them, as the schedule's
// transfers are: activations_[(s, m)] is stage s's output, gradients_[(s, m)] the gradient
// of stage s's input. A forward or backward puts its result there; a send takes it from
// there, a receive puts it there, so stages on one rank hand tensors over without a
// transfer and the compute code does not care where a tensor came from. Skip tensors
// travel the same way, keyed by (route, micro-batch).
#include "strata/parallel/pipeline/executor.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "executor_internal.h"
#include "strata/core/error.h"
#include "strata/core/fault_injection.h"
#include "strata/core/flight_recorder.h"
#include "strata/parallel/comm/tensor_message.h"
#include "strata/parallel/pipeline/skip.h"
#include "worker_generator.h"

namespace strata::parallel {

using pipeline_detail::carries_gradient;
using pipeline_detail::distinct_trainable;
using pipeline_detail::forward_layer;
using pipeline_detail::message_tag;
using pipeline_detail::RngStates;
using pipeline_detail::StageValue;

StageValue pipeline_detail::forward_layer(torch::nn::AnyModule& layer, const StageValue& input,
                                          int stage) {
  torch::nn::AnyValue value =
      input.list ? layer.any_forward(input.tensors) : layer.any_forward(input.tensors.at(0));
  if (auto* tensor = value.try_get<at::Tensor>()) return {{std::move(*tensor)}, false};
  if (auto* list = value.try_get<StageIO>()) return {std::move(*list), true};
  STRATA_FAIL("pipeline executor: a layer of stage ", stage, " returned a value of type ",
              value.type_info().name(), ", expected at::Tensor or StageIO (stage_io.h)");
}

namespace {

// Adds `gradient` to the parameter's .grad, as backward() would.
void accumulate_gradient(at::Tensor& parameter, const at::Tensor& gradient) {
  if (!gradient.defined()) return;
  if (parameter.grad().defined())
    parameter.mutable_grad().add_(gradient);
  else
    parameter.mutable_grad() = gradient.clone();
}

// A tensor between stages as it travels: fp32 in the compute precision (half the bytes
// with bf16), anything else as it is.
at::Tensor on_the_wire(const at::Tensor& tensor, core::Precision precision) {
  if (precision == core::Precision::Fp32 || !tensor.defined() || tensor.scalar_type() != at::kFloat)
    return tensor;
  return tensor.to(core::compute_dtype(precision));
}

StageValue on_the_wire(const StageValue& value, core::Precision precision) {
  StageValue wire{{}, value.list};
  for (const auto& tensor : value.tensors) wire.tensors.push_back(on_the_wire(tensor, precision));
  return wire;
}

int64_t tensor_bytes(const at::Tensor& tensor) {
  return tensor.defined() ? tensor.numel() * static_cast<int64_t>(tensor.element_size()) : 0;
}
int64_t tensor_bytes(const StageValue& value) {
  int64_t bytes = 0;
  for (const auto& tensor : value.tensors) bytes += tensor_bytes(tensor);
  return bytes;
}

// What a layer returned, as the next layer or stage takes it.

// The generators a stage's forward may draw from: the CPU one, and the CUDA one of the
// input's device (layers are assumed to live on their input's device).
RngStates capture_rng(const at::Tensor& like) {
  std::vector<at::Generator> generators{at::detail::getDefaultCPUGenerator()};
  if (like.defined() && like.is_cuda())
    generators.push_back(at::globalContext().defaultGenerator(like.device()));
  RngStates states;
  for (auto& generator : generators) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    states.emplace_back(generator, generator.get_state());
  }
  return states;
}
void restore_rng(RngStates& states) {
  for (auto& [generator, state] : states) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  }
}

// Puts a tray in place of this thread's skip tray and the old one back when it goes, so
// that a stage sees only its own skip tensors, also when it throws.
class TrayScope {
 public:
  explicit TrayScope(SkipTray tray) : previous_(exchange_skip_tray(std::move(tray))) {}
  ~TrayScope() { exchange_skip_tray(std::move(previous_)); }
  SkipTray take() { return exchange_skip_tray({}); }

 private:
  SkipTray previous_;
};

}  // namespace

double PipelineExecutor::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                    torch::optim::Optimizer* optimizer, GradientSync sync) {
  STRATA_CHECK(sync == GradientSync::Synchronize || optimizer == nullptr,
               "pipeline executor: an optimizer step needs synchronized gradients");
  sync_ = sync;
  // The weights may have changed since the last step's casts were cached.
  core::clear_cast_cache();
  const int m = schedule_.num_micro_batches;
  STRATA_CHECK(inputs.dim() >= 1 && inputs.size(0) % m == 0, "pipeline executor: batch size ",
               inputs.dim() >= 1 ? inputs.size(0) : 0, " is not a multiple of the ", m,
               " micro-batches");
  STRATA_CHECK_EQ(targets.size(0), inputs.size(0), "pipeline executor: targets' batch size");
  input_chunks_ = inputs.chunk(m, 0);
  target_chunks_ = targets.chunk(m, 0);
  saved_.clear();
  activations_.clear();
  gradients_.clear();
  skip_activations_.clear();
  skip_gradients_.clear();
  receives_.clear();
  sends_.clear();
  records_.clear();
  saved_bytes_ = peak_saved_bytes_ = 0;
  loss_sum_ = at::zeros({}, at::kDouble);

  step_start_ = std::chrono::steady_clock::now();
  const auto seconds = [this] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start_).count();
  };
  post_receives();
  for (const auto& in : schedule_.ranks[comm_->rank()]) {
    progress_receives();
    core::fault_point("pipeline-instruction");
    const double start = seconds();
    sent_bytes_ = 0;
    if (clock_) clock_->begin(comm_->rank(), in);
    {
      // What the watchdog reports if this instruction never ends.
      core::FlightRecordScope record(to_string(in), in.peer,
                                     to_string(in.op) + " stage " + std::to_string(in.stage));
      if (in.op == PipelineOp::Forward) core::fault_point("forward");
      run(in, optimizer);
    }
    const double end = seconds();
    records_.push_back(
        {in, start, end, clock_ ? clock_->end(comm_->rank(), in, sent_bytes_) : -1.0});
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
      if (sync_ == GradientSync::Accumulate) return;
      sync_tied_gradients();
      if (gradient_sync_) gradient_sync_();
      return;
    case PipelineOp::OptimizerStep:
      if (optimizer != nullptr) optimizer->step();
      core::clear_cast_cache();  // the casts of the old weights are no use now
      return;
  }
}

void PipelineExecutor::hold(Saved& saved, int64_t bytes) {
  saved.bytes += bytes;
  saved_bytes_ += bytes;
  peak_saved_bytes_ = std::max(peak_saved_bytes_, saved_bytes_);
}

at::Tensor PipelineExecutor::compute(int stage, int micro_batch, Saved& saved) {
  // On this thread, whichever runs the stage; the loss below runs in fp32.
  core::AutocastScope autocast(options_.precision());
  SkipTray tray;
  for (const auto& [route, leaf] : saved.skip_inputs) tray[skip_routes_[route].name] = leaf;
  TrayScope scope(std::move(tray));
  saved.layer_outputs.clear();
  saved.layer_parameters.clear();
  int64_t layer_bytes = 0;
  // Layer by layer, as Sequential::forward does, counting the layer outputs autograd
  // keeps and, for a split backward, keeping what W needs. A layer that takes or returns
  // several tensors makes W take the whole stage (their gradients do not split by layer).
  saved.whole_stage_weight = saved.input.list;
  StageValue output = saved.input;
  for (auto& layer : *stages_.at(stage)) {
    StageValue next = forward_layer(layer, output, stage);
    for (const auto& tensor : next.tensors) {
      const bool aliases =
          std::any_of(output.tensors.begin(), output.tensors.end(), [&](const at::Tensor& t) {
            return tensor.defined() && t.defined() && t.data_ptr() == tensor.data_ptr();
          });
      if (!aliases) layer_bytes += tensor_bytes(tensor);
    }
    output = std::move(next);
    saved.whole_stage_weight = saved.whole_stage_weight || output.list;
    if (!split_backward_ || shared_weight_stages_.count(stage) || saved.whole_stage_weight)
      continue;
    std::vector<at::Tensor> parameters = distinct_trainable(layer.ptr()->parameters());
    if (parameters.empty() || !output.tensors[0].requires_grad()) continue;
    saved.layer_outputs.push_back(output.tensors[0]);
    saved.layer_parameters.push_back(std::move(parameters));
  }
  if (saved.whole_stage_weight) {
    saved.layer_outputs.clear();
    saved.layer_parameters.clear();
  }
  if (at::GradMode::is_enabled()) hold(saved, layer_bytes);

  // What is left on the tray was stashed here for a later stage.
  saved.skip_outputs.clear();
  for (auto& [stashed_name, tensor] : scope.take()) {
    // A lambda may not capture a structured binding in C++17 (gcc allows it, clang not).
    const std::string& name = stashed_name;
    auto route = std::find_if(skip_routes_.begin(), skip_routes_.end(), [&](const SkipRoute& r) {
      return r.name == name && r.from == stage;
    });
    STRATA_CHECK(route != skip_routes_.end(), "pipeline executor: stage ", stage, " left '", name,
                 "' on the skip tray, expected it popped in this stage");
    saved.skip_outputs.emplace_back(static_cast<int>(route - skip_routes_.begin()), tensor);
  }

  if (stage != schedule_.num_stages - 1) {
    saved.output = std::move(output);
    return {};
  }
  STRATA_CHECK(!output.list, "pipeline executor: the last stage (", stage,
               ") returned a StageIO of ", output.tensors.size(),
               " tensors, expected one tensor (the loss function's input)");
  at::Tensor loss = loss_(core::to_full_precision(output.tensors[0]),
                          target_chunks_[micro_batch].to(options_.device()));
  // The one place the loss is scaled: gradients summed over M micro-batches are then
  // the gradient of the batch's mean loss.
  saved.output = {{loss / schedule_.num_micro_batches}, false};
  return loss;
}

void PipelineExecutor::forward(int stage, int micro_batch) {
  auto saved = std::make_unique<Saved>();
  if (stage == 0) {
    saved->input = {{input_chunks_[micro_batch].to(options_.device())}, false};
  } else {
    auto it = activations_.find({stage - 1, micro_batch});
    // verify_schedule guarantees it is there; a failure here is an executor bug.
    STRATA_CHECK(it != activations_.end(), "pipeline executor: no activation of stage ", stage - 1,
                 ", micro-batch ", micro_batch, " for the forward of stage ", stage);
    // Leaves of this stage's graph, so that their gradients are what goes back; in fp32
    // again if they travelled in bf16.
    saved->input.list = it->second.list;
    for (const auto& tensor : it->second.tensors) {
      at::Tensor input = options_.precision() == core::Precision::Fp32
                             ? tensor.detach()
                             : core::to_full_precision(tensor).detach();
      if (carries_gradient(input)) input.requires_grad_(true);
      saved->input.tensors.push_back(std::move(input));
    }
    activations_.erase(it);
  }
  const int rank = comm_->rank();
  for (int r = 0; r < static_cast<int>(skip_routes_.size()); ++r) {
    if (skip_routes_[r].to != stage) continue;
    at::Tensor skip;
    if (schedule_.rank_of_stage(skip_routes_[r].from) == rank) {
      skip = skip_activations_.at({r, micro_batch});
      skip_activations_.erase(Key{r, micro_batch});
    } else {
      skip = complete_receive(skip_tag(false, r, micro_batch)).tensors.at(0);
    }
    // A leaf like the input: its gradient goes back to the stashing stage.
    saved->skip_inputs.emplace_back(r, skip.detach().requires_grad_(true));
  }

  saved->needs_recompute = recomputes(stage);
  at::Tensor loss;
  {
    pipeline_detail::WorkerGeneratorScope generator;  // this rank's draws, as under mpirun
    if (saved->needs_recompute) {
      saved->rng = capture_rng(saved->input.tensors[0]);
      torch::NoGradGuard no_grad;
      loss = compute(stage, micro_batch, *saved);
    } else {
      loss = compute(stage, micro_batch, *saved);
    }
  }
  int64_t bytes = tensor_bytes(saved->input) + tensor_bytes(saved->output);
  for (const auto& skips : {&saved->skip_inputs, &saved->skip_outputs})
    for (const auto& [route, tensor] : *skips) bytes += tensor_bytes(tensor);
  hold(*saved, bytes);

  if (loss.defined()) {
    loss_sum_ += loss.detach().to(at::kDouble).cpu();
  } else {
    StageValue output = saved->output;
    for (auto& tensor : output.tensors) tensor = tensor.detach();
    activations_[{stage, micro_batch}] = on_the_wire(output, options_.precision());
  }
  // Skip tensors go straight to the popping stage's rank, not through the stages between.
  for (const auto& [r, tensor] : saved->skip_outputs) {
    const int peer = schedule_.rank_of_stage(skip_routes_[r].to);
    if (peer == rank)
      skip_activations_[{r, micro_batch}] = tensor.detach();
    else
      isend({{tensor.detach()}, false}, peer, skip_tag(false, r, micro_batch));
  }
  saved_[{stage, micro_batch}] = std::move(saved);
}

void PipelineExecutor::ensure_graph(int stage, int micro_batch, Saved& saved) {
  if (!saved.needs_recompute) return;
  // The forward's random draws again (dropout masks), then the generators go on from
  // where they were.
  pipeline_detail::WorkerGeneratorScope generator;
  RngStates now = capture_rng(saved.input.tensors[0]);
  restore_rng(saved.rng);
  try {
    compute(stage, micro_batch, saved);
  } catch (...) {
    restore_rng(now);
    throw;
  }
  restore_rng(now);
  saved.needs_recompute = false;
}

std::vector<at::Tensor> PipelineExecutor::output_gradients(int stage, int micro_batch) {
  Saved& saved = *saved_.at({stage, micro_batch});
  if (stage == schedule_.num_stages - 1) return {at::ones_like(saved.output.tensors[0])};
  auto it = gradients_.find({stage + 1, micro_batch});
  STRATA_CHECK(it != gradients_.end(), "pipeline executor: no gradient of stage ", stage + 1,
               ", micro-batch ", micro_batch, " for the backward of stage ", stage);
  std::vector<at::Tensor> gradients = std::move(it->second.tensors);
  gradients_.erase(it);
  // One per floating output, in order.
  std::vector<at::Tensor> outputs;
  for (const auto& output : saved.output.tensors)
    if (carries_gradient(output)) outputs.push_back(output);
  STRATA_CHECK(gradients.size() == outputs.size(), "pipeline executor: ", gradients.size(),
               " gradients from stage ", stage + 1, ", micro-batch ", micro_batch,
               ", expected one per floating output of stage ", stage, " (", outputs.size(), ")");
  // They may have travelled in bf16; autograd wants the outputs' dtypes.
  for (size_t i = 0; i < gradients.size(); ++i)
    gradients[i] = gradients[i].to(outputs[i].scalar_type());
  return gradients;
}

void PipelineExecutor::backward_roots(int stage, int micro_batch, std::vector<at::Tensor>& roots,
                                      std::vector<at::Tensor>& gradients) {
  Saved& saved = *saved_.at({stage, micro_batch});
  const std::vector<at::Tensor> output_grads = output_gradients(stage, micro_batch);
  size_t next = 0;
  for (const auto& output : saved.output.tensors) {
    if (!carries_gradient(output)) continue;
    const at::Tensor& gradient = output_grads[next++];
    if (!output.requires_grad()) continue;
    roots.push_back(output);
    gradients.push_back(gradient);
  }
  const int rank = comm_->rank();
  for (const auto& [r, tensor] : saved.skip_outputs) {
    at::Tensor gradient;
    if (schedule_.rank_of_stage(skip_routes_[r].to) == rank) {
      gradient = skip_gradients_.at({r, micro_batch});
      skip_gradients_.erase(Key{r, micro_batch});
    } else {
      gradient = complete_receive(skip_tag(true, r, micro_batch)).tensors.at(0);
    }
    if (!tensor.requires_grad()) continue;
    roots.push_back(tensor);
    gradients.push_back(gradient);
  }
}

// The floating leaves of a stage's input, whose gradients go back.
std::vector<at::Tensor> PipelineExecutor::gradient_inputs(int stage, int micro_batch) const {
  std::vector<at::Tensor> leaves;
  if (stage == 0) return leaves;
  for (const auto& input : saved_.at({stage, micro_batch})->input.tensors)
    if (carries_gradient(input)) leaves.push_back(input);
  return leaves;
}

void PipelineExecutor::publish_input_gradients(int stage, int micro_batch,
                                               std::vector<at::Tensor> gradients) {
  if (stage == 0) return;
  const StageValue& input = saved_.at({stage, micro_batch})->input;
  const std::vector<at::Tensor> leaves = gradient_inputs(stage, micro_batch);
  // A stage whose output does not depend on an input (or only through integer ops) still
  // owes the previous stage its gradient: zero. One plain tensor for one floating input,
  // a list otherwise (also an empty one, for an input without a floating tensor).
  StageValue value{{}, input.list || leaves.size() != 1};
  for (size_t i = 0; i < leaves.size(); ++i)
    value.tensors.push_back(gradients[i].defined() ? gradients[i] : at::zeros_like(leaves[i]));
  gradients_[{stage, micro_batch}] = on_the_wire(value, options_.precision());
}

void PipelineExecutor::publish_skip_gradients(int micro_batch, Saved& saved,
                                              const std::vector<at::Tensor>& grads) {
  const int rank = comm_->rank();
  for (size_t i = 0; i < saved.skip_inputs.size(); ++i) {
    const auto& [r, leaf] = saved.skip_inputs[i];
    at::Tensor gradient = grads[i].defined() ? grads[i] : at::zeros_like(leaf);
    const int peer = schedule_.rank_of_stage(skip_routes_[r].from);
    if (peer == rank)
      skip_gradients_[{r, micro_batch}] = gradient;
    else
      isend({{gradient}, false}, peer, skip_tag(true, r, micro_batch));
  }
}

void PipelineExecutor::release(int stage, int micro_batch) {
  auto it = saved_.find({stage, micro_batch});
  saved_bytes_ -= it->second->bytes;
  saved_.erase(it);
}

void PipelineExecutor::backward(int stage, int micro_batch) {
  Saved& saved = *saved_.at({stage, micro_batch});
  ensure_graph(stage, micro_batch, saved);
  std::vector<at::Tensor> roots, root_gradients;
  backward_roots(stage, micro_batch, roots, root_gradients);
  if (!roots.empty()) torch::autograd::backward(roots, root_gradients);
  std::vector<at::Tensor> skip_grads;
  for (const auto& [r, leaf] : saved.skip_inputs) skip_grads.push_back(leaf.grad());
  publish_skip_gradients(micro_batch, saved, skip_grads);
  std::vector<at::Tensor> input_grads;
  for (const auto& leaf : gradient_inputs(stage, micro_batch)) input_grads.push_back(leaf.grad());
  publish_input_gradients(stage, micro_batch, std::move(input_grads));
  release(stage, micro_batch);
}

void PipelineExecutor::backward_input(int stage, int micro_batch) {
  Saved& saved = *saved_.at({stage, micro_batch});
  ensure_graph(stage, micro_batch, saved);
  std::vector<at::Tensor> roots, root_gradients;
  backward_roots(stage, micro_batch, roots, root_gradients);
  // One autograd pass for the gradients of the input and the popped skip tensors and, on
  // the way, of the layer outputs W starts from; the graph stays for W.
  std::vector<at::Tensor> targets = saved.layer_outputs;
  for (const auto& [r, leaf] : saved.skip_inputs) targets.push_back(leaf);
  const std::vector<at::Tensor> leaves = gradient_inputs(stage, micro_batch);
  targets.insert(targets.end(), leaves.begin(), leaves.end());
  std::vector<at::Tensor> grads(targets.size());
  if (!targets.empty() && !roots.empty())
    grads = torch::autograd::grad(roots, targets, root_gradients, /*retain_graph=*/true,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  const auto inputs_begin = grads.end() - static_cast<std::ptrdiff_t>(leaves.size());
  std::vector<at::Tensor> input_gradients(inputs_begin, grads.end());
  grads.erase(inputs_begin, grads.end());
  const auto skips_begin = grads.begin() + static_cast<std::ptrdiff_t>(saved.layer_outputs.size());
  publish_skip_gradients(micro_batch, saved, std::vector<at::Tensor>(skips_begin, grads.end()));
  grads.erase(skips_begin, grads.end());
  saved.layer_output_gradients = std::move(grads);
  if (shared_weight_stages_.count(stage) || saved.whole_stage_weight) {
    saved.roots = std::move(roots);
    saved.root_gradients = std::move(root_gradients);
  }
  publish_input_gradients(stage, micro_batch, std::move(input_gradients));
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
  if (!saved.roots.empty()) {
    std::vector<at::Tensor> parameters = distinct_trainable(stages_.at(stage)->parameters());
    if (!parameters.empty()) {
      std::vector<at::Tensor> grads =
          torch::autograd::grad(saved.roots, parameters, saved.root_gradients,
                                /*retain_graph=*/false, /*create_graph=*/false,
                                /*allow_unused=*/true);
      for (size_t p = 0; p < parameters.size(); ++p) accumulate_gradient(parameters[p], grads[p]);
    }
  }
  release(stage, micro_batch);
}

int PipelineExecutor::skip_tag(bool gradient, int route, int micro_batch) const {
  // After the stage messages' tags (the constructor checks the total).
  return message_tag(gradient, schedule_.num_stages + route, micro_batch,
                     schedule_.num_micro_batches);
}

void PipelineExecutor::isend(const StageValue& value, int peer, int tag) {
  // The Works keep the tensors alive until the sends complete (waited at the step's end).
  for (auto& work : value.list ? isend_tensors(*comm_, value.tensors, peer, tag)
                               : comm_->isend_tensor(value.tensors[0], peer, tag))
    sends_.push_back(std::move(work));
}

void PipelineExecutor::send(const PipelineInstruction& in) {
  const bool gradient = in.op == PipelineOp::SendGradient;
  auto& store = gradient ? gradients_ : activations_;
  auto it = store.find({in.stage, in.micro_batch});
  STRATA_CHECK(it != store.end(), "pipeline executor: nothing to send for ", to_string(in));
  sent_bytes_ += tensor_bytes(it->second);
  isend(it->second, in.peer,
        message_tag(gradient, in.stage, in.micro_batch, schedule_.num_micro_batches));
  store.erase(it);
}

void PipelineExecutor::post_receive(int source, int tag) {
  receives_[tag] = comm_->irecv_tensor(source, tag, options_.device());
}

void PipelineExecutor::post_receives() {
  for (const auto& in : schedule_.ranks[comm_->rank()]) {
    if (in.op != PipelineOp::RecvActivation && in.op != PipelineOp::RecvGradient) continue;
    const bool gradient = in.op == PipelineOp::RecvGradient;
    post_receive(in.peer,
                 message_tag(gradient, in.stage, in.micro_batch, schedule_.num_micro_batches));
  }
  // Skip tensors into this rank's popping stages, their gradients into its stashing ones.
  const int rank = comm_->rank();
  for (int r = 0; r < static_cast<int>(skip_routes_.size()); ++r) {
    const int from = schedule_.rank_of_stage(skip_routes_[r].from);
    const int to = schedule_.rank_of_stage(skip_routes_[r].to);
    if (from == to) continue;
    for (int m = 0; m < schedule_.num_micro_batches; ++m) {
      if (to == rank) post_receive(from, skip_tag(false, r, m));
      if (from == rank) post_receive(to, skip_tag(true, r, m));
    }
  }
}

// Lets every pending receive progress (over MPI: posts the data of each message whose
// header is in), so that the data moves while this rank computes.
void PipelineExecutor::progress_receives() {
  for (auto& [tag, work] : receives_) work->is_completed();
}

StageValue PipelineExecutor::complete_receive(int tag) {
  auto it = receives_.find(tag);
  STRATA_CHECK(it != receives_.end(), "pipeline executor: no receive posted for tag ", tag);
  TensorWorkPtr work = std::move(it->second);
  receives_.erase(it);
  work->wait();
  return {received_tensors(*work), received_list(*work)};
}

void PipelineExecutor::receive(const PipelineInstruction& in) {
  const bool gradient = in.op == PipelineOp::RecvGradient;
  (gradient ? gradients_ : activations_)[{in.stage, in.micro_batch}] = complete_receive(
      message_tag(gradient, in.stage, in.micro_batch, schedule_.num_micro_batches));
}

}  // namespace strata::parallel
