#pragma once
// A module's parameters, each tensor once. torch::nn::Module::parameters() lists a tensor
// once per name it is registered under, so a weight shared by two layers (a language
// model's embedding and output head) would be stepped twice by an optimizer, and counted
// twice by a gradient all-reduce.

#include <ATen/core/Tensor.h>

#include <vector>

namespace torch::nn {
class Module;
}

namespace strata::core {

// The parameters of `module`, each tensor once (the first name wins), in named order.
std::vector<at::Tensor> unique_parameters(const torch::nn::Module& module);

}  // namespace strata::core
