// Moving a module's parameters and buffers in place (LibTorch 1.13's Module::to cannot
// move to PrivateUse1: set_data rejects a tensor with another dispatch key set).

#include "strata/accel/to_device.h"

#include <torch/csrc/autograd/variable.h>

#include <mutex>
#include <unordered_set>

#include "strata/accel/device_allocator.h"

namespace strata::accel {
namespace {

std::string owner_path(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

at::Tensor moved_copy(const at::Tensor& t, c10::Device device, const std::string& layer) {
  at::Tensor out = t.to(device);
  if (is_device(device)) set_storage_layer(out.storage(), layer);
  return out;
}

// What Variable::set_data does, without its check that the dispatch keys match: every
// handle to this TensorImpl (module fields, parameter dictionaries) now sees the moved
// tensor, with its autograd metadata (requires_grad, .grad, hooks) kept.
void move_in_place(at::Tensor& t, c10::Device device, const std::string& layer) {
  if (!t.defined() || t.device() == device) return;
  at::Tensor moved, grad;
  {
    torch::NoGradGuard no_grad;
    moved = moved_copy(t, device, layer);
    if (t.grad().defined()) grad = moved_copy(t.grad(), device, layer);
  }
  if (auto* meta = torch::autograd::impl::get_autograd_meta(t)) {
    // The gradient accumulator caches the device of the tensor: a new one is made on the
    // next backward.
    std::lock_guard<std::mutex> lock(meta->mutex_);
    meta->grad_accumulator_.reset();
  }
  t.unsafeGetTensorImpl()->shallow_copy_from(moved.getIntrusivePtr());
  if (grad.defined()) t.mutable_grad() = grad;
}

}  // namespace

void to_device(torch::nn::Module& module, c10::Device device) {
  register_device();
  if (is_device(device) && device.has_index()) accel::device(device.index());  // checks it
  // Shared parameters appear under several names: move each tensor once, tagged with
  // its first owner.
  std::unordered_set<const c10::TensorImpl*> done;
  auto move_all = [&](torch::OrderedDict<std::string, at::Tensor> tensors) {
    for (auto& item : tensors) {
      if (!item.value().defined() || !done.insert(item.value().unsafeGetTensorImpl()).second)
        continue;
      move_in_place(item.value(), device, owner_path(item.key()));
    }
  };
  move_all(module.named_parameters(/*recurse=*/true));
  move_all(module.named_buffers(/*recurse=*/true));
}

}  // namespace strata::accel
