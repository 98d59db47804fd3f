#pragma once
// What the pipeline executor's source files share: the message format, the private
// structs of PipelineExecutor, and small helpers. Private to the module.

#include <ATen/ATen.h>
#include <torch/nn/modules/container/any.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "strata/parallel/pipeline/executor.h"
#include "strata/parallel/pipeline/stage_io.h"

namespace strata::parallel {
namespace pipeline_detail {

// Each tensor travels as a header and its data (tensor_message.h).
// MPI guarantees tags up to 32767 (MPI_TAG_UB may be larger, but need not be).
constexpr int64_t kMaxTag = 32767;

// One tag per message: (stage, micro-batch, kind). The header and the data of a message
// share it: messages with one (source, destination, tag) arrive in the order sent.
inline int message_tag(bool gradient, int stage, int micro_batch, int micro_batches) {
  return static_cast<int>((static_cast<int64_t>(stage) * micro_batches + micro_batch) * 2 +
                          (gradient ? 1 : 0));
}

// The parameters that require grad, each tensor once.
inline std::vector<at::Tensor> distinct_trainable(const std::vector<at::Tensor>& all) {
  std::vector<at::Tensor> parameters;
  for (const auto& p : all)
    if (p.requires_grad() && std::none_of(parameters.begin(), parameters.end(),
                                          [&](const at::Tensor& q) { return q.is_same(p); }))
      parameters.push_back(p);
  return parameters;
}

// Whether a tensor between stages gets a gradient back: floating ones do; masks and token
// ids do not.
inline bool carries_gradient(const at::Tensor& t) { return at::isFloatingType(t.scalar_type()); }

// `layer` of `stage` run on `input` as it came (one tensor, or a StageIO): what the layer
// returned. Raises strata::Error for a layer that returns anything else. The executor,
// the layer profile and PipelineParallel::evaluate run layers through this one function.
StageValue forward_layer(torch::nn::AnyModule& layer, const StageValue& input, int stage);

// The states of the generators a stage's forward drew from, to draw the same again.
using RngStates = std::vector<std::pair<at::Generator, at::Tensor>>;

}  // namespace pipeline_detail

struct PipelineExecutor::SkipRoute {
  std::string name;
  int from = 0, to = 0;  // the stashing and the popping stage
};

struct PipelineExecutor::TiedGroup {
  CommunicatorPtr comm;            // the ranks holding a copy, ordered by rank
  std::vector<at::Tensor> copies;  // this rank's distinct tensors of the group
};

struct PipelineExecutor::Saved {
  // Leaves; the floating ones require grad except on stage 0.
  pipeline_detail::StageValue input;
  // The stage's output; on the last stage, the scaled loss.
  pipeline_detail::StageValue output;
  // Skip tensors popped here (leaves that require grad, as the input) and stashed here
  // for later stages (roots of the backward), by route.
  std::vector<std::pair<int, at::Tensor>> skip_inputs, skip_outputs;
  // A recomputed stage's forward ran without autograd; `rng` is the state it began with.
  bool needs_recompute = false;
  pipeline_detail::RngStates rng;
  int64_t bytes = 0;  // what peak_saved_bytes counts for this entry
  // For a split backward: the output of each layer with trainable parameters, its
  // parameters, and (from B) the gradient of that output. W then runs each such layer's
  // own backward node only, instead of autograd again through the whole stage.
  std::vector<at::Tensor> layer_outputs;
  std::vector<std::vector<at::Tensor>> layer_parameters;
  std::vector<at::Tensor> layer_output_gradients;
  // For a split backward of a stage that uses one parameter in several layers, or whose
  // layers pass several tensors (whole_stage_weight): B's roots and their gradients, from
  // which W computes the weight gradients in one pass.
  bool whole_stage_weight = false;
  std::vector<at::Tensor> roots, root_gradients;
};

}  // namespace strata::parallel
