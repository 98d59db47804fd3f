#include "strata/parallel/hybrid_parallel.h"

#include <torch/torch.h>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/parameters.h"

namespace strata::parallel {

HybridParallel::HybridParallel(torch::nn::Sequential model, CommunicatorPtr world,
                               PipelineLoss loss, const at::Tensor& sample_batch,
                               HybridParallelOptions options)
    : HybridParallel(std::move(model),
                     ProcessGrid(std::move(world),
                                 ProcessGridOptions().pipeline_parallel(options.pipeline_parallel())),
                     std::move(loss), sample_batch, options) {}

HybridParallel::HybridParallel(torch::nn::Sequential model, ProcessGrid grid, PipelineLoss loss,
                               const at::Tensor& sample_batch, HybridParallelOptions options)
    : grid_(std::move(grid)),
      loss_(std::move(loss)),
      expert_parameters_(options.expert_parameters()) {
  STRATA_CHECK(grid_.pipeline_size() == options.pipeline_parallel(), "hybrid parallel: a grid of ",
               grid_.pipeline_size(), " pipeline stages, but options for ",
               options.pipeline_parallel());
  STRATA_CHECK(expert_parameters_.empty() || options.pipeline_parallel() == 1,
               "hybrid parallel: expert parallelism inside a pipeline (pipeline-parallel size ",
               options.pipeline_parallel(), ") is not supported yet, expected 1");
  if (options.pipeline_parallel() == 1) {
    model_ = model;
    ddp_ = std::make_unique<DistributedDataParallel>(
        model.ptr(), grid_.data_parallel(),
        DistributedDataParallelOptions()
            .bucket_cap_bytes(options.bucket_cap_bytes())
            .expert_parameters(expert_parameters_)
            .expert_data_parallel_group(grid_.expert_data_parallel()));
  } else {
    PipelineParallelOptions pipeline = options.pipeline();
    pipeline.bucket_cap_bytes(options.bucket_cap_bytes());
    pipeline_ = std::make_unique<PipelineParallel>(model, grid_, loss_, sample_batch, pipeline);
  }
}

HybridParallel::~HybridParallel() = default;

std::vector<at::Tensor> HybridParallel::parameters() const {
  return pipeline_ ? pipeline_->parameters() : core::unique_parameters(*model_);
}

double HybridParallel::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                  torch::optim::Optimizer& optimizer) {
  optimizer.zero_grad();
  if (pipeline_) return pipeline_->train_step(inputs, targets, &optimizer);
  const at::Tensor loss = loss_(model_->forward(inputs), targets);
  loss.backward();  // DistributedDataParallel has averaged the gradients when this returns
  optimizer.step();
  return loss.item<double>();
}

double HybridParallel::mean_over_replicas(double replica_value) {
  // Every rank of a pipeline holds its replica's value, so the mean over the world is the
  // mean over the replicas.
  at::Tensor value = at::full({1}, replica_value, at::kDouble);
  grid_.world()->allreduce(value, ReduceOp::Avg)->wait();
  return value.item<double>();
}

at::Tensor HybridParallel::evaluate(const at::Tensor& inputs) {
  if (pipeline_) return pipeline_->evaluate(inputs);
  torch::NoGradGuard no_grad;
  const bool training = model_->is_training();
  model_->eval();
  at::Tensor output = model_->forward(inputs);
  model_->train(training);
  return output;
}

void HybridParallel::save_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                     int64_t step, const nlohmann::json& extra) {
  if (pipeline_) return pipeline_->save_checkpoint(path, &optimizer, step, extra);
  core::CheckpointContents contents = core::checkpoint_contents(*model_, &optimizer);
  gather_expert_tensors(contents);
  if (grid_.rank() == 0) core::write_checkpoint(path, contents, step, extra);
  grid_.world()->barrier()->wait();
}

void HybridParallel::gather_expert_tensors(core::CheckpointContents& contents) {
  if (expert_parameters_.empty()) return;
  // A parameter, or an optimizer state of it ("optimizer/<name>/<field>") with its shape.
  auto is_expert_tensor = [&](const core::CheckpointTensor& t) {
    for (const std::string& name : expert_parameters_) {
      if (t.name == name) return true;
      const std::string state = "optimizer/" + name + "/";
      if (t.name.compare(0, state.size(), state) == 0 && t.tensor.dim() >= 1) return true;
    }
    return false;
  };
  // Every rank lists the same tensors in the same order, so the gathers line up.
  const CommunicatorPtr group = grid_.expert_parallel();
  for (core::CheckpointTensor& t : contents.tensors) {
    if (!is_expert_tensor(t)) continue;
    const at::Tensor shard = t.tensor.detach().contiguous();
    std::vector<int64_t> stacked = shard.sizes().vec();
    stacked.insert(stacked.begin(), group->size());
    at::Tensor all = at::empty(stacked, shard.options());
    group->allgather(shard, all)->wait();
    stacked.erase(stacked.begin());
    stacked[0] *= group->size();
    t.tensor = all.view(stacked);  // rank r's experts come r-th: the unpartitioned order
  }
}

int64_t HybridParallel::load_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                        nlohmann::json* extra) {
  if (pipeline_) return pipeline_->load_checkpoint(path, &optimizer, extra);
  STRATA_CHECK(expert_parameters_.empty(), "load checkpoint ", path,
               ": loading into experts spread over ", grid_.expert_parallel_size(),
               " ranks is not supported yet, expected an expert-parallel size of 1");
  return core::load_checkpoint(path, *model_, &optimizer, extra);
}

}  // namespace strata::parallel
