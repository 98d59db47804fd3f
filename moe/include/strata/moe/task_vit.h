#pragma once
// M3ViT on Fashion-MNIST: fmnist-vit (core/models/fmnist_vit.h) whose blocks' FFNs are
// task-routed experts (TaskMoELayer), with one class head per task. Two tasks by default:
// task 0 the 10-class label, task 1 the coarse group (fashion_mnist_group). A forward pass
// serves one task, set_task(t): t's routers, t's experts and t's head run, nothing else.
// extract_task(model, t) exports that task as a plain single-task model.
//
//   M3Vit model(M3VitOptions());                 // 8 experts, task 0: 0..4, task 1: 3..7
//   model->set_task(1);
//   at::Tensor groups = model(images);           // [B, 4]
//   torch::nn::Sequential task1 = extract_task(*model, 1);  // embed, block0.., head
//
// With experts(0) the blocks are dense (fmnist-vit's DecoderBlocks of FFN width
// dense_ffn()): the dense multi-task baseline of the same compute per token.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "strata/core/models/fmnist_vit.h"
#include "strata/moe/task_routing.h"

namespace strata::moe {

// A Fashion-MNIST label's coarse group: 0 tops (T-shirt, pullover, dress, coat, shirt),
// 1 bottoms (trouser), 2 footwear (sandal, sneaker, ankle boot), 3 bags.
at::Tensor fashion_mnist_group(const at::Tensor& labels);
constexpr int64_t kFashionMnistGroups = 4;

struct M3VitOptions {
  // Raises strata::Error naming the first bad option.
  void validate() const;
  int64_t tasks() const { return static_cast<int64_t>(task_classes().size()); }
  // The FFN width of a dense block of the same compute per token: top_k x expert_ffn.
  int64_t dense_ffn() const { return top_k() * expert_ffn(); }
  // The task-routed layers' options (experts() > 0).
  TaskMoELayerOptions moe() const;

  // The trunk: patches, width, heads, layers (its ffn and classes are not used).
  TORCH_ARG(core::FmnistVitOptions, vit) = {};
  // task_classes[t]: task t's head's outputs.
  TORCH_ARG(std::vector<int64_t>, task_classes) = {10, kFashionMnistGroups};
  TORCH_ARG(int64_t, experts) = 8;  // 0: dense blocks
  TORCH_ARG(int64_t, expert_ffn) = 64;
  TORCH_ARG(int64_t, top_k) = 2;
  // As TaskMoELayerOptions::task_experts; the default shares experts 3 and 4.
  TORCH_ARG(std::vector<std::vector<int64_t>>, task_experts) = std::vector<std::vector<int64_t>>{
      {0, 1, 2, 3, 4}, {3, 4, 5, 6, 7}};
};

// fmnist-vit's pre-LayerNorm block (bidirectional attention) around any FFN module.
class VitMoEBlockImpl : public torch::nn::Module {
 public:
  VitMoEBlockImpl(const core::TransformerLMOptions& options, torch::nn::AnyModule ffn);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::LayerNorm norm1{nullptr};
  core::CausalSelfAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  torch::nn::AnyModule ffn;  // TaskMoELayer or MoELayer
};
TORCH_MODULE(VitMoEBlock);

class M3VitImpl : public torch::nn::Module {
 public:
  // Initialized like fmnist-vit (the experts and routers as MoELayer initializes them);
  // deterministic under torch::manual_seed.
  explicit M3VitImpl(const M3VitOptions& options);
  // images [B, 1, 28, 28] -> the current task's logits [B, task_classes[task]].
  at::Tensor forward(const at::Tensor& images);
  // Which task forward serves; strata::Error naming the task count outside 0..tasks-1.
  void set_task(int64_t task);
  int64_t task() const { return task_; }

  M3VitOptions options;
  core::PatchEmbedding embed{nullptr};
  // "block<i>": VitMoEBlock over a TaskMoELayer, or with experts(0) a core::DecoderBlock.
  std::vector<torch::nn::AnyModule> blocks;
  std::vector<TaskMoELayer> moe_layers;  // the blocks' task-routed layers (empty if dense)
  std::vector<core::ClassHead> heads;    // "head<t>"

 private:
  int64_t task_ = 0;
};
TORCH_MODULE(M3Vit);

// The single-task model of `task`: a Sequential embed, block0.., head (fmnist-vit's layout,
// so a pipeline can cut it) whose blocks hold extract_task's MoELayers (only that task's
// experts and router; a dense model's blocks as they are) and whose head is that task's.
// Copies: training either model afterwards leaves the other as it was. Equal outputs to
// `model` on that task. strata::Error for a task the model does not have.
torch::nn::Sequential extract_task(const M3VitImpl& model, int64_t task);

// What one image costs at inference in a single-task model (made by extract_task, or
// core::make_fmnist_vit): its parameters (all resident), multiply-adds (attention
// included; a routed token counts its router and its top_k experts) and the parameters'
// bytes in float32.
struct InferenceCost {
  int64_t parameters = 0;
  int64_t macs = 0;
  int64_t parameter_bytes = 0;
};
InferenceCost inference_cost(const torch::nn::Sequential& single_task);

// The elements of `model`'s parameters, each tensor once (core::unique_parameters).
int64_t parameter_count(const torch::nn::Module& model);

}  // namespace strata::moe
