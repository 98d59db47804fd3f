#pragma once
// A deep copy of one layer, with tensors of its own: for a pipeline that runs stages in
// one process and gives each in-process rank its own copy of a weight tied across ranks
// (docs/pipeline.md, "Stages on devices"). LibTorch's Cloneable modules are cloned; core's
// LMHead, deliberately not Cloneable (a clone of the whole model would silently untie
// it), gets a head over a copy of its table. Anything else raises strata::Error naming
// the layer.

#include <torch/nn/modules/container/any.h>

#include <string>

namespace strata::core {

// `name` is the layer's name in its model, for the error message.
torch::nn::AnyModule copy_layer(const torch::nn::AnyModule& layer, const std::string& name);

}  // namespace strata::core
