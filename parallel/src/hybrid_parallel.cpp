#include "strata/parallel/hybrid_parallel.h"

#include <torch/torch.h>

#include <optional>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/flight_recorder.h"
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
  return train_step(inputs, targets, optimizer, 1, [](int) {}).front();
}

std::vector<double> HybridParallel::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                               torch::optim::Optimizer& optimizer, int passes,
                                               const std::function<void(int)>& before_pass) {
  STRATA_CHECK(passes >= 1, "train step: ", passes, " passes, expected at least 1");
  optimizer.zero_grad();
  std::vector<double> losses;
  for (int pass = 0; pass < passes; ++pass) {
    before_pass(pass);
    const bool last = pass + 1 == passes;
    if (pipeline_) {
      // The last pass runs the schedule's all-reduce and optimizer-step instructions.
      losses.push_back(last ? pipeline_->train_step(inputs, targets, &optimizer)
                            : pipeline_->train_step(inputs, targets, nullptr,
                                                    GradientSync::Accumulate));
      continue;
    }
    // Until the last pass, the gradients only accumulate; the last backward averages
    // their sum over the replicas.
    std::optional<DistributedDataParallel::NoSyncGuard> no_sync;
    if (!last) no_sync.emplace(*ddp_);
    const at::Tensor loss = [&] {
      core::FlightRecordScope record("forward of a replica's batch");
      return loss_(model_->forward(inputs), targets);
    }();
    {
      core::FlightRecordScope record("backward of a replica's batch (gradient all-reduces)");
      loss.backward();
    }
    losses.push_back(loss.item<double>());
    if (last) {
      core::FlightRecordScope record("optimizer step");
      optimizer.step();
    }
  }
  return losses;
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

bool HybridParallel::is_expert_tensor(const core::CheckpointTensor& t) const {
  for (const std::string& name : expert_parameters_) {
    if (t.name == name) return true;
    // Optimizer state with the parameter's shape (not Adam's scalar step).
    const std::string state = "optimizer/" + name + "/";
    if (t.name.compare(0, state.size(), state) == 0 && t.tensor.dim() >= 1) return true;
  }
  return false;
}

void HybridParallel::gather_expert_tensors(core::CheckpointContents& contents) {
  if (expert_parameters_.empty()) return;
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
  if (expert_parameters_.empty()) return core::load_checkpoint(path, *model_, &optimizer, extra);

  // The checkpoint holds whole expert stacks: give the expert parameters their whole shape
  // for the load (checked and read like any other tensor), then keep this rank's slice of
  // them and of their optimizer state.
  const int64_t shards = grid_.expert_parallel_size(), shard = grid_.expert_parallel_rank();
  const auto named = model_->named_parameters();
  std::vector<at::Tensor> experts, originals;
  for (const std::string& name : expert_parameters_) {
    at::Tensor p = named[name];
    std::vector<int64_t> whole = p.sizes().vec();
    whole[0] *= shards;
    experts.push_back(p);
    originals.push_back(p.detach());
    p.set_data(at::empty(whole, p.options()));
  }
  int64_t step = 0;
  try {
    step = core::load_checkpoint(path, *model_, &optimizer, extra);
  } catch (...) {
    for (size_t i = 0; i < experts.size(); ++i) experts[i].set_data(originals[i]);
    throw;  // model and optimizer untouched, as core::load_checkpoint promises
  }
  torch::NoGradGuard no_grad;
  auto slice = [&](const at::Tensor& whole) {
    const int64_t rows = whole.size(0) / shards;
    return whole.narrow(0, shard * rows, rows).clone();
  };
  for (at::Tensor& p : experts) p.set_data(slice(p));
  // The optimizer state tensors are the live ones: set_ slices them in place.
  for (core::CheckpointTensor& t : core::checkpoint_contents(*model_, &optimizer).tensors) {
    if (t.kind == "optimizer" && is_expert_tensor(t)) t.tensor.set_(slice(t.tensor));
  }
  return step;
}

}  // namespace strata::parallel
