#pragma once
// Tensors compared by name, for the tests that resume a checkpoint in another layout: a
// loader that dropped the optimizer state (SGD momentum, Adam's moments and step) still
// gives the same parameters and the same next loss, so these tests compare the optimizer
// state itself with the checkpoint's, tensor by tensor, by parameter name.

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "strata/core/checkpoint.h"

namespace strata::test {

using TensorsByName = std::map<std::string, at::Tensor>;

// The optimizer state `optimizer` holds for the parameters of `model`, under the names a
// checkpoint gives it ("optimizer/<parameter name in model>/<field>").
inline TensorsByName optimizer_state(const torch::nn::Module& model,
                                     torch::optim::Optimizer& optimizer) {
  TensorsByName state;
  for (const auto& t : core::checkpoint_contents(model, &optimizer).tensors) {
    if (t.kind == "optimizer") state.emplace(t.name, t.tensor);
  }
  return state;
}

// The tensors of the checkpoint at `path` whose kind is in `kinds`; with `parameters`, only
// the optimizer state of those parameters (a pipeline stage holds a part of the model).
inline TensorsByName checkpoint_tensors(const std::string& path, const std::set<std::string>& kinds,
                                        const std::set<std::string>* parameters = nullptr) {
  core::CheckpointReader reader(path);
  TensorsByName tensors;
  for (const auto& entry : reader.entries()) {
    if (!kinds.count(entry.kind)) continue;
    if (parameters != nullptr) {
      // "optimizer/<parameter>/<field>": the parameter's name may hold dots, not slashes.
      const size_t begin = entry.name.find('/') + 1, end = entry.name.rfind('/');
      if (!parameters->count(entry.name.substr(begin, end - begin))) continue;
    }
    tensors.emplace(entry.name, reader.read(entry.name));
  }
  return tensors;
}

// The optimizer state the checkpoint at `path` saved for the parameters of `model`.
inline TensorsByName checkpoint_optimizer_state(const std::string& path,
                                                const torch::nn::Module& model) {
  std::set<std::string> names;
  for (const auto& item : model.named_parameters()) names.insert(item.key());
  return checkpoint_tensors(path, {"optimizer"}, &names);
}

// One line per difference between `expected` and `actual`: a name in one only, another
// dtype or shape, other values (loading copies tensors, so they must be equal exactly).
// Nothing to compare is a difference too, so that a test cannot pass on two empty sets.
inline std::vector<std::string> tensor_differences(const TensorsByName& expected,
                                                   const TensorsByName& actual) {
  std::vector<std::string> differences;
  if (expected.empty()) differences.push_back("nothing to compare: no expected tensors");
  for (const auto& [name, want] : expected) {
    const auto it = actual.find(name);
    if (it == actual.end()) {
      differences.push_back(name + ": missing");
    } else if (it->second.scalar_type() != want.scalar_type() ||
               it->second.sizes() != want.sizes()) {
      differences.push_back(c10::str(name, ": ", it->second.scalar_type(), " of shape ",
                                     it->second.sizes(), ", expected ", want.scalar_type(),
                                     " of shape ", want.sizes()));
    } else if (!it->second.equal(want)) {
      const at::Tensor error = (it->second.to(at::kDouble) - want.to(at::kDouble)).abs();
      differences.push_back(c10::str(name, ": differs by up to ", error.max().item<double>()));
    }
  }
  for (const auto& item : actual) {
    if (!expected.count(item.first)) differences.push_back(item.first + ": not expected");
  }
  return differences;
}

}  // namespace strata::test
