#include "strata/moe/task_vit.h"

#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/core/parameters.h"

namespace strata::moe {

namespace nn = torch::nn;

at::Tensor fashion_mnist_group(const at::Tensor& labels) {
  // T-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot.
  static const at::Tensor group = at::tensor({0, 1, 0, 0, 0, 2, 0, 2, 3, 2}, at::kLong);
  STRATA_CHECK(labels.scalar_type() == at::kLong, "Fashion-MNIST labels: a ", labels.scalar_type(),
               " tensor, expected int64");
  return group.to(labels.device()).index_select(0, labels.flatten()).view(labels.sizes());
}

void M3VitOptions::validate() const {
  vit().validate();
  STRATA_CHECK(!task_classes().empty(), "M3ViT: no tasks, expected at least one");
  for (const int64_t c : task_classes())
    STRATA_CHECK(c >= 1, "M3ViT task classes ", c, ", expected at least 1");
  STRATA_CHECK(experts() >= 0, "M3ViT experts ", experts(), ", expected 0 (dense) or more");
  STRATA_CHECK(expert_ffn() >= 1 && top_k() >= 1, "M3ViT expert_ffn ", expert_ffn(), " and top_k ",
               top_k(), ", expected at least 1 each");
  if (experts() > 0) moe().validate();
}

TaskMoELayerOptions M3VitOptions::moe() const {
  return TaskMoELayerOptions(
             MoELayerOptions(vit().d_model(), experts(), expert_ffn()).top_k(top_k()), tasks())
      .task_experts(task_experts());
}

// ---------------------------------------------------------------- VitMoEBlock

VitMoEBlockImpl::VitMoEBlockImpl(const core::TransformerLMOptions& options,
                                 torch::nn::AnyModule ffn_)
    : ffn(std::move(ffn_)) {
  const int64_t d = options.d_model();
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({d})));
  attn = register_module("attn", core::CausalSelfAttention(options));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({d})));
  register_module("ffn", ffn.ptr());
}

at::Tensor VitMoEBlockImpl::forward(const at::Tensor& x) {
  return core::pre_norm_residuals(
      x, norm1, attn, norm2, [this](const at::Tensor& h) { return ffn.forward(h); },
      /*p=*/0.0, is_training());
}

// ---------------------------------------------------------------- M3Vit

M3VitImpl::M3VitImpl(const M3VitOptions& options_) : options(options_) {
  options.validate();
  // fmnist-vit built and initialized as usual; with experts its FFNs then give way to
  // task-routed layers (initialized by MoELayer, in block order).
  const core::FmnistVitOptions vit = core::FmnistVitOptions(options.vit()).ffn(options.dense_ffn());
  torch::nn::Sequential dense = core::make_fmnist_vit(vit);
  embed = register_module("embed", core::PatchEmbedding(dense->ptr<core::PatchEmbeddingImpl>(0)));
  for (int64_t i = 0; i < vit.layers(); ++i) {
    const auto block = dense->ptr<core::DecoderBlockImpl>(static_cast<size_t>(1 + i));
    torch::nn::AnyModule any;
    if (options.experts() == 0) {
      any = torch::nn::AnyModule(core::DecoderBlock(block));
    } else {
      TaskMoELayer moe(options.moe());
      moe_layers.push_back(moe);
      VitMoEBlock routed(vit.blocks(), torch::nn::AnyModule(moe));
      // The dense block's attention and norms, initialized as fmnist-vit's.
      routed->norm1 = routed->replace_module("norm1", block->norm1);
      routed->attn = routed->replace_module("attn", block->attn);
      routed->norm2 = routed->replace_module("norm2", block->norm2);
      any = torch::nn::AnyModule(routed);
    }
    register_module("block" + std::to_string(i), any.ptr());
    blocks.push_back(std::move(any));
  }
  for (int64_t t = 0; t < options.tasks(); ++t) {
    core::ClassHead head(vit.d_model(), options.task_classes()[static_cast<size_t>(t)]);
    core::init_gpt2_weights(*head);
    heads.push_back(register_module("head" + std::to_string(t), head));
  }
}

void M3VitImpl::set_task(int64_t task) {
  STRATA_CHECK(task >= 0 && task < options.tasks(), "M3ViT task ", task, ": the model has ",
               options.tasks(), " tasks, expected 0 to ", options.tasks() - 1);
  for (TaskMoELayer& layer : moe_layers) layer->set_task(task);
  task_ = task;
}

at::Tensor M3VitImpl::forward(const at::Tensor& images) {
  at::Tensor x = embed(images);
  for (torch::nn::AnyModule& block : blocks) x = block.forward(x);
  return heads[static_cast<size_t>(task_)](x);
}

// ---------------------------------------------------------------- extraction

torch::nn::Sequential extract_task(const M3VitImpl& model, int64_t task) {
  const M3VitOptions& o = model.options;
  STRATA_CHECK(task >= 0 && task < o.tasks(), "M3ViT task ", task, ": the model has ", o.tasks(),
               " tasks, expected 0 to ", o.tasks() - 1);
  const core::FmnistVitOptions vit = core::FmnistVitOptions(o.vit())
                                         .ffn(o.dense_ffn())
                                         .classes(o.task_classes()[static_cast<size_t>(task)]);
  // fmnist-vit's layout; with experts its dense FFNs give way to the task's experts.
  const torch::nn::Sequential dense = core::make_fmnist_vit(vit);
  torch::nn::Sequential single;
  const std::vector<std::string> names = dense->named_children().keys();
  size_t i = 0;
  for (const torch::nn::AnyModule& element : *dense) {
    const std::string& name = names[i++];
    if (o.experts() > 0 && element.ptr()->as<core::DecoderBlockImpl>() != nullptr) {
      const TaskMoELayer& layer = model.moe_layers[i - 2];  // block0 is element 1
      const VitMoEBlock routed(vit.blocks(), torch::nn::AnyModule(extract_task(*layer, task)));
      single->push_back(name, torch::nn::AnyModule(routed));
    } else {
      single->push_back(name, element);
    }
  }
  // Copy everything else by name: blockI.* and embed.* are named alike in both, the head
  // is head<task> in the multi-task model.
  const auto source = model.named_parameters();
  torch::NoGradGuard no_grad;
  for (auto& p : single->named_parameters()) {
    const std::string& name = p.key();
    if (name.find(".ffn.") != std::string::npos) continue;  // extract_task's copies
    const std::string from =
        name.rfind("head.", 0) == 0 ? "head" + std::to_string(task) + name.substr(4) : name;
    const at::Tensor* value = source.find(from);
    STRATA_CHECK(value != nullptr, "M3ViT extraction: no parameter ", from, " in the model");
    p.value().copy_(*value);
  }
  return single;
}

InferenceCost inference_cost(const torch::nn::Sequential& single) {
  InferenceCost cost;
  cost.parameters = parameter_count(*single);
  cost.parameter_bytes = 4 * cost.parameters;
  int64_t tokens = 0, d = 0;
  for (const auto& child : single->children()) {
    if (const auto* embed = child->as<core::PatchEmbeddingImpl>()) {
      const core::FmnistVitOptions& v = embed->options;
      tokens = v.tokens();
      d = v.d_model();
      cost.macs += (tokens - 1) * v.patch() * v.patch() * d;
    } else if (const auto* head = child->as<core::ClassHeadImpl>()) {
      cost.macs += head->linear->weight.numel();
    } else {
      // A block: q, k, v and out projections, scores and the weighted sum, then its FFN.
      cost.macs += tokens * 4 * d * d + 2 * tokens * tokens * d;
      if (const auto* dense = child->as<core::DecoderBlockImpl>()) {
        cost.macs += tokens * 2 * d * dense->ffn_in->weight.size(0);
      } else if (const auto* routed = child->as<VitMoEBlockImpl>()) {
        const auto* moe = routed->ffn.ptr()->as<MoELayerImpl>();
        STRATA_CHECK(moe != nullptr, "inference_cost: a block whose FFN is not a MoELayer");
        const MoELayerOptions& m = moe->options;
        cost.macs += tokens * (d * m.experts() + m.top_k() * 2 * d * m.hidden());
      }
    }
  }
  return cost;
}

int64_t parameter_count(const torch::nn::Module& model) {
  int64_t count = 0;
  for (const at::Tensor& p : core::unique_parameters(model)) count += p.numel();
  return count;
}

}  // namespace strata::moe
