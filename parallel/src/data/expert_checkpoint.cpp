#include "strata/parallel/data/expert_checkpoint.h"

#include <torch/torch.h>

namespace strata::parallel {

bool is_expert_tensor(const core::CheckpointTensor& t,
                      const std::vector<std::string>& expert_parameters) {
  for (const std::string& name : expert_parameters) {
    if (t.name == name) return true;
    const std::string state = "optimizer/" + name + "/";
    if (t.name.compare(0, state.size(), state) == 0 && t.tensor.dim() >= 1) return true;
  }
  return false;
}

void gather_expert_tensors(core::CheckpointContents& contents,
                           const std::vector<std::string>& expert_parameters,
                           Communicator& expert_group) {
  if (expert_parameters.empty()) return;
  for (core::CheckpointTensor& t : contents.tensors) {
    if (!is_expert_tensor(t, expert_parameters)) continue;
    const at::Tensor shard = t.tensor.detach().contiguous();
    std::vector<int64_t> stacked = shard.sizes().vec();
    stacked.insert(stacked.begin(), expert_group.size());
    at::Tensor all = at::empty(stacked, shard.options());
    expert_group.allgather(shard, all)->wait();
    stacked.erase(stacked.begin());
    stacked[0] *= expert_group.size();
    t.tensor = all.view(stacked);  // rank r's experts come r-th: the unpartitioned order
  }
}

int64_t load_checkpoint_with_expert_slices(const std::string& path, torch::nn::Module& model,
                                           torch::optim::Optimizer* optimizer,
                                           nlohmann::json* extra, core::CheckpointMatch match,
                                           const std::vector<std::string>& expert_parameters,
                                           int64_t shards, int64_t shard) {
  // Give the expert parameters their whole shape for the load.
  const auto named = model.named_parameters();
  std::vector<std::string> local_names;
  std::vector<at::Tensor> experts, originals;
  for (const std::string& name : expert_parameters) {
    const at::Tensor* found = named.find(name);
    if (found == nullptr) continue;
    at::Tensor p = *found;
    std::vector<int64_t> whole = p.sizes().vec();
    whole[0] *= shards;
    local_names.push_back(name);
    experts.push_back(p);
    originals.push_back(p.detach());
    p.set_data(at::empty(whole, p.options()));
  }
  int64_t step = 0;
  try {
    step = core::load_checkpoint(path, model, optimizer, extra, match);
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
  for (core::CheckpointTensor& t : core::checkpoint_contents(model, optimizer).tensors) {
    if (t.kind == "optimizer" && is_expert_tensor(t, local_names)) t.tensor.set_(slice(t.tensor));
  }
  return step;
}

}  // namespace strata::parallel
