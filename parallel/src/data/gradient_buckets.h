#pragma once
// What DistributedDataParallel and ZeroDataParallel share: flat buffers that tensors live
// in, the grouping of parameters into buckets, autograd hooks that say when a parameter's
// gradient is complete, and the initial broadcast of rank 0's state. Internal to
// strata::parallel.

#include <torch/csrc/autograd/function.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel::detail {

// A tensor sharing `buffer`'s storage from element `offset` with `sizes`, contiguous. Made
// with set_ rather than narrow/view so that it is not an autograd view: optimizers call
// detach_() on .grad, which autograd views refuse.
at::Tensor storage_slice(const at::Tensor& buffer, int64_t offset, at::IntArrayRef sizes);

// Makes a parameter's gradient `grad` the tensor `slot` (its place in a flat bucket), so
// that collectives work on it in place and later accumulations land there: copies the
// gradient in, or zeroes the slot when there is none (unused this step: contributes
// nothing). Nothing happens when `grad` is already the slot.
void move_into_slot(at::Tensor& grad, const at::Tensor& slot);

// Groups `params` into buckets, each one dtype, in reverse order (the order in which
// backward produces gradients); a bucket closes when it reaches its cap (the first one
// `first_cap_bytes`, so that communication starts early). Returns each bucket's indices
// into `params`, in that order.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<at::Tensor>& params,
                                                int64_t cap_bytes, int64_t first_cap_bytes);

// Calls on_ready(i) after autograd has accumulated params[i]'s gradient into .grad, on the
// thread running backward. The callbacks must not outlive what they capture: remove()
// (or the destructor) takes them off the autograd graph.
class GradientReadyHooks {
 public:
  GradientReadyHooks() = default;
  GradientReadyHooks(const GradientReadyHooks&) = delete;
  GradientReadyHooks& operator=(const GradientReadyHooks&) = delete;
  ~GradientReadyHooks() { remove(); }
  void install(const std::vector<at::Tensor>& params, const std::function<void(size_t)>& on_ready);
  void remove();

 private:
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
};

// Copies rank 0's `tensors` to every rank, through detached aliases: the backend may write
// from another thread, where this thread's no-grad mode does not hold.
void broadcast_from_rank0(Communicator& comm, const std::vector<at::Tensor>& tensors);

}  // namespace strata::parallel::detail
