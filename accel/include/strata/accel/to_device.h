#pragma once
// Moving a whole module to a simulated device (or back to the CPU) in one call.
//
// LibTorch 1.13's Module::to(privateuseone) fails (set_data refuses a tensor with another
// dispatch key set). to_device instead swaps each parameter's and buffer's TensorImpl
// contents for the moved tensor's in place, keeping every Tensor handle that points to it
// (the module's own fields such as Linear::weight, the parameter dictionaries, an
// optimizer's parameter list), its requires_grad and its autograd identity. A defined
// .grad moves too.
//
// Create the optimizer after moving: its state (momentum buffers) is made on the device
// of the parameters it first steps with. Move between training steps, not while a graph
// built from the parameters is still alive.

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>

#include "strata/accel/device.h"

namespace strata::accel {

// Moves every parameter and buffer of `module` and its children to `device`, and tags
// each device storage with its owning module path (the parameter's name minus its last
// component, e.g. "features.0"; "" for the root) for layer attribution.
void to_device(torch::nn::Module& module, c10::Device device);

inline void to_device(const std::shared_ptr<torch::nn::Module>& module, c10::Device device) {
  to_device(*module, device);
}

template <typename ModuleType>
void to_device(torch::nn::ModuleHolder<ModuleType>& holder, c10::Device device) {
  to_device(*holder.ptr(), device);
}

}  // namespace strata::accel
