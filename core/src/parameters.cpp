#include "strata/core/parameters.h"

#include <torch/nn/module.h>

#include <unordered_set>

namespace strata::core {

std::vector<at::Tensor> unique_parameters(const torch::nn::Module& module) {
  std::unordered_set<const void*> seen;
  std::vector<at::Tensor> out;
  for (const auto& item : module.named_parameters()) {
    if (seen.insert(item.value().unsafeGetTensorImpl()).second) out.push_back(item.value());
  }
  return out;
}

}  // namespace strata::core
