#include "gradient_buckets.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <unordered_map>

#include "strata/core/error.h"

namespace strata::parallel::detail {

at::Tensor storage_slice(const at::Tensor& buffer, int64_t offset, at::IntArrayRef sizes) {
  at::Tensor slice = at::empty({0}, buffer.options());
  slice.set_(buffer.storage(), buffer.storage_offset() + offset, sizes,
             c10::contiguous_strides(sizes));
  return slice;
}

void move_into_slot(at::Tensor& grad, const at::Tensor& slot) {
  if (grad.defined() && grad.is_alias_of(slot) && grad.data_ptr() == slot.data_ptr()) return;
  torch::NoGradGuard no_grad;
  if (grad.defined()) {
    slot.copy_(grad);
  } else {
    slot.zero_();
  }
  grad = slot;
}

std::vector<std::vector<size_t>> assign_buckets(const std::vector<at::Tensor>& params,
                                                int64_t cap_bytes, int64_t first_cap_bytes) {
  STRATA_CHECK(cap_bytes > 0 && first_cap_bytes > 0,
               "data parallel bucket caps must be positive, got ", cap_bytes, " and ",
               first_cap_bytes);
  std::vector<std::vector<size_t>> buckets;
  std::unordered_map<int, size_t> open_bucket;  // dtype -> index of its open bucket
  std::vector<int64_t> bucket_bytes;
  for (size_t i = params.size(); i-- > 0;) {
    const at::Tensor& p = params[i];
    const int dtype = static_cast<int>(p.scalar_type());
    auto it = open_bucket.find(dtype);
    if (it == open_bucket.end()) {
      it = open_bucket.emplace(dtype, buckets.size()).first;
      buckets.emplace_back();
      bucket_bytes.push_back(0);
    }
    const size_t b = it->second;
    buckets[b].push_back(i);
    bucket_bytes[b] += p.numel() * p.element_size();
    if (bucket_bytes[b] >= (b == 0 ? first_cap_bytes : cap_bytes)) open_bucket.erase(it);
  }
  return buckets;
}

namespace {
struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::function<void(size_t)> on_ready, size_t index)
      : on_ready_(std::move(on_ready)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    on_ready_(index_);
    return outputs;
  }
  std::function<void(size_t)> on_ready_;
  size_t index_;
};
}  // namespace

void GradientReadyHooks::install(const std::vector<at::Tensor>& params,
                                 const std::function<void(size_t)>& on_ready) {
  for (size_t i = 0; i < params.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(params[i]);
    const uintptr_t key = accumulator->add_post_hook(std::make_unique<ReadyHook>(on_ready, i));
    hooks_.push_back({accumulator, key});
  }
}

void GradientReadyHooks::remove() {
  for (auto& [accumulator, key] : hooks_) accumulator->del_post_hook(key);
  hooks_.clear();
}

void broadcast_from_rank0(Communicator& comm, const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> data;
  std::vector<WorkPtr> works;
  for (const auto& t : tensors) {
    data.push_back(t.detach());
    works.push_back(comm.broadcast(data.back(), 0));
  }
  for (auto& w : works) w->wait();
}

}  // namespace strata::parallel::detail
