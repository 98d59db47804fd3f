#include "strata/parallel/data/distributed_data_parallel.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <algorithm>
#include <unordered_map>

#include "strata/core/error.h"
#include "strata/core/parameters.h"

namespace strata::parallel {
namespace detail {

namespace {

// A tensor sharing `storage` from `offset` with `sizes`, contiguous. Made with set_
// rather than narrow/view so that it is not an autograd view: optimizers call detach_()
// on .grad, which autograd views refuse.
at::Tensor storage_slice(const at::Tensor& buffer, int64_t offset, at::IntArrayRef sizes) {
  at::Tensor slice = at::empty({0}, buffer.options());
  slice.set_(buffer.storage(), buffer.storage_offset() + offset, sizes,
             c10::contiguous_strides(sizes));
  return slice;
}

}  // namespace

// Owns the buckets and runs the all-reduces. Autograd hooks hold it weakly, so that a
// destroyed DistributedDataParallel leaves harmless hooks behind.
class GradientReducer : public std::enable_shared_from_this<GradientReducer> {
 public:
  // Gradients are divided by `divisor` and summed over `comm`.
  GradientReducer(std::vector<at::Tensor> params, CommunicatorPtr comm, int divisor,
                  const DistributedDataParallelOptions& options)
      : params_(std::move(params)),
        comm_(std::move(comm)),
        divisor_(divisor),
        reduce_dtype_(options.reduce_dtype()) {
    build_buckets(options);
  }

  void install_hooks() {
    std::weak_ptr<GradientReducer> weak = weak_from_this();
    for (size_t i = 0; i < params_.size(); ++i) {
      auto accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
      const uintptr_t key = accumulator->add_post_hook(std::make_unique<ReadyHook>(weak, i));
      hooks_.push_back({accumulator, key});
    }
  }

  void remove_hooks() {
    for (auto& [accumulator, key] : hooks_) accumulator->del_post_hook(key);
    hooks_.clear();
  }

  bool sync_enabled = true;

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  std::vector<int64_t> bucket_sizes() const {
    std::vector<int64_t> sizes;
    for (const auto& bucket : buckets_) sizes.push_back(static_cast<int64_t>(bucket.params.size()));
    return sizes;
  }
  std::vector<at::Tensor> bucket_buffers() const {
    std::vector<at::Tensor> buffers;
    for (const auto& bucket : buckets_) buffers.push_back(bucket.buffer);
    return buffers;
  }

 private:
  struct Bucket {
    at::Tensor buffer;              // flat, one dtype, all the bucket's gradients
    std::vector<size_t> params;     // indices into params_
    std::vector<at::Tensor> views;  // views[k]: params[k]'s slice of buffer
    size_t pending = 0;             // gradients not yet ready this backward
    WorkPtr work;                   // the all-reduce in flight, if launched
  };

  // Called by autograd after a parameter's gradient has been accumulated into .grad.
  struct ReadyHook : torch::autograd::FunctionPostHook {
    ReadyHook(std::weak_ptr<GradientReducer> reducer, size_t index)
        : reducer_(std::move(reducer)), index_(index) {}
    torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                              const torch::autograd::variable_list&) override {
      if (auto reducer = reducer_.lock()) reducer->on_gradient_ready(index_);
      return outputs;
    }
    std::weak_ptr<GradientReducer> reducer_;
    size_t index_;
  };

  void build_buckets(const DistributedDataParallelOptions& options) {
    STRATA_CHECK(options.bucket_cap_bytes() > 0 && options.first_bucket_cap_bytes() > 0,
                 "data parallel bucket caps must be positive, got ", options.bucket_cap_bytes(),
                 " and ", options.first_bucket_cap_bytes());
    // Reverse registration order approximates the order in which backward produces
    // gradients. A bucket holds one dtype and closes when it reaches its cap.
    std::unordered_map<int, size_t> open_bucket;  // dtype -> index of its open bucket
    std::vector<int64_t> bucket_bytes;
    location_.resize(params_.size());
    for (size_t i = params_.size(); i-- > 0;) {
      const at::Tensor& p = params_[i];
      const int dtype = static_cast<int>(p.scalar_type());
      auto it = open_bucket.find(dtype);
      if (it == open_bucket.end()) {
        it = open_bucket.emplace(dtype, buckets_.size()).first;
        buckets_.emplace_back();
        bucket_bytes.push_back(0);
      }
      const size_t b = it->second;
      location_[i] = {b, buckets_[b].params.size()};
      buckets_[b].params.push_back(i);
      bucket_bytes[b] += p.numel() * p.element_size();
      const int64_t cap = b == 0 ? options.first_bucket_cap_bytes() : options.bucket_cap_bytes();
      if (bucket_bytes[b] >= cap) open_bucket.erase(it);
    }
    torch::NoGradGuard no_grad;
    for (auto& bucket : buckets_) {
      int64_t numel = 0;
      for (size_t i : bucket.params) numel += params_[i].numel();
      bucket.buffer = at::zeros({numel}, params_[bucket.params.front()].options());
      int64_t offset = 0;
      for (size_t i : bucket.params) {
        bucket.views.push_back(storage_slice(bucket.buffer, offset, params_[i].sizes()));
        offset += params_[i].numel();
      }
      bucket.pending = bucket.params.size();
    }
  }

  // Makes params_[i].grad live in its bucket slot, so the all-reduce works on it in place
  // and later accumulations (gradient accumulation, LibTorch 1.13's zero_grad) stay there.
  void move_grad_into_bucket(size_t i) {
    auto [b, k] = location_[i];
    at::Tensor& view = buckets_[b].views[k];
    at::Tensor& grad = params_[i].mutable_grad();
    if (grad.defined() && grad.is_alias_of(view) && grad.data_ptr() == view.data_ptr()) return;
    torch::NoGradGuard no_grad;
    if (grad.defined()) {
      view.copy_(grad);
    } else {
      view.zero_();  // unused this step: contributes nothing
    }
    grad = view;
  }

  void on_gradient_ready(size_t i) {
    if (!sync_enabled) return;
    if (!finalize_queued_) {
      // Runs when this backward pass ends, on the thread that called backward.
      std::weak_ptr<GradientReducer> weak = weak_from_this();
      torch::autograd::Engine::get_default_engine().queue_callback([weak] {
        if (auto reducer = weak.lock()) reducer->finish_backward();
      });
      finalize_queued_ = true;
    }
    move_grad_into_bucket(i);
    Bucket& bucket = buckets_[location_[i].first];
    STRATA_CHECK(bucket.pending > 0, "data parallel: parameter ", i,
                 " received its gradient twice in one backward pass");
    --bucket.pending;
    launch_ready_buckets(/*force=*/false);
    // MPI's non-blocking collectives progress only inside MPI calls: poll the ones in flight.
    for (size_t b = 0; b < next_to_launch_; ++b) buckets_[b].work->is_completed();
  }

  // Launches buckets strictly in index order, so every rank issues the same sequence of
  // collectives even if its gradients arrive in another order.
  void launch_ready_buckets(bool force) {
    while (next_to_launch_ < buckets_.size()) {
      Bucket& bucket = buckets_[next_to_launch_];
      if (bucket.pending > 0 && !force) break;
      for (size_t i : bucket.params) move_grad_into_bucket(i);
      bucket.buffer.div_(divisor_);
      const at::ScalarType dtype = bucket.buffer.scalar_type();
      bucket.work =
          allreduce_in_dtype(*comm_, bucket.buffer, ReduceOp::Sum,
                             at::isFloatingType(dtype) ? reduce_dtype_.value_or(dtype) : dtype);
      ++next_to_launch_;
    }
  }

  void finish_backward() {
    finalize_queued_ = false;
    // Parameters that got no gradient in this backward (unused, or frozen paths) count
    // as zero, as long as every rank reduces every bucket.
    launch_ready_buckets(/*force=*/true);
    for (auto& bucket : buckets_) {
      bucket.work->wait();
      bucket.work.reset();
      bucket.pending = bucket.params.size();
    }
    next_to_launch_ = 0;
  }

  std::vector<at::Tensor> params_;
  CommunicatorPtr comm_;
  int divisor_;
  c10::optional<at::ScalarType> reduce_dtype_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> location_;  // param -> (bucket, slot)
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  size_t next_to_launch_ = 0;
  bool finalize_queued_ = false;
};

}  // namespace detail

namespace {
bool contains(const std::vector<at::Tensor>& tensors, const at::Tensor& t) {
  return std::any_of(tensors.begin(), tensors.end(),
                     [&](const at::Tensor& e) { return e.is_same(t); });
}
}  // namespace

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<torch::nn::Module> module,
                                                 CommunicatorPtr comm,
                                                 DistributedDataParallelOptions options)
    : module_(std::move(module)), comm_(std::move(comm)) {
  STRATA_CHECK(module_ != nullptr, "DistributedDataParallel: module is null");
  STRATA_CHECK(comm_ != nullptr, "DistributedDataParallel: communicator is null");
  // Expert parameters apart (see the options), by their names.
  const auto named = module_->named_parameters();
  for (const std::string& name : options.expert_parameters()) {
    const at::Tensor* p = named.find(name);
    STRATA_CHECK(p != nullptr, "DistributedDataParallel: expert parameter \"", name,
                 "\" is not a parameter of the module");
    expert_params_.push_back(*p);
  }
  if (!expert_params_.empty()) {
    expert_comm_ = options.expert_data_parallel_group();
    STRATA_CHECK(expert_comm_ != nullptr, "DistributedDataParallel: ", expert_params_.size(),
                 " expert parameters but no expert_data_parallel_group");
  }
  // Each tensor once: a tied weight has one gradient, reduced once.
  std::vector<at::Tensor> params, expert_params;
  for (const auto& p : core::unique_parameters(*module_)) {
    if (p.requires_grad()) (contains(expert_params_, p) ? expert_params : params).push_back(p);
  }
  broadcast_state();
  reducer_ =
      std::make_shared<detail::GradientReducer>(std::move(params), comm_, comm_->size(), options);
  reducer_->install_hooks();
  if (!expert_params.empty()) {
    expert_reducer_ = std::make_shared<detail::GradientReducer>(
        std::move(expert_params), expert_comm_, comm_->size(), options);
    expert_reducer_->install_hooks();
  }
}

DistributedDataParallel::~DistributedDataParallel() {
  reducer_->remove_hooks();
  if (expert_reducer_) expert_reducer_->remove_hooks();
}

namespace {
// Broadcasts from rank 0 into detached aliases: the backend may write from another
// thread, where this thread's no-grad mode does not hold.
void broadcast_from_rank0(Communicator& comm, const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> data;
  std::vector<WorkPtr> works;
  for (const auto& t : tensors) {
    data.push_back(t.detach());
    works.push_back(comm.broadcast(data.back(), 0));
  }
  for (auto& w : works) w->wait();
}
}  // namespace

void DistributedDataParallel::broadcast_state() {
  std::vector<at::Tensor> params;
  for (const auto& p : module_->parameters()) {
    if (!contains(expert_params_, p)) params.push_back(p);
  }
  broadcast_from_rank0(*comm_, params);
  if (!expert_params_.empty()) broadcast_from_rank0(*expert_comm_, expert_params_);
  broadcast_buffers();
}

void DistributedDataParallel::broadcast_buffers() {
  broadcast_from_rank0(*comm_, module_->buffers());
}

DistributedDataParallel::NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp)
    : ddp_(ddp), previous_(ddp.reducer_->sync_enabled) {
  ddp_.reducer_->sync_enabled = false;
  if (ddp_.expert_reducer_) ddp_.expert_reducer_->sync_enabled = false;
}

DistributedDataParallel::NoSyncGuard::~NoSyncGuard() {
  ddp_.reducer_->sync_enabled = previous_;
  if (ddp_.expert_reducer_) ddp_.expert_reducer_->sync_enabled = previous_;
}

int64_t DistributedDataParallel::num_buckets() const { return reducer_->num_buckets(); }

std::vector<int64_t> DistributedDataParallel::bucket_sizes() const {
  return reducer_->bucket_sizes();
}

std::vector<at::Tensor> DistributedDataParallel::bucket_buffers() const {
  return reducer_->bucket_buffers();
}

}  // namespace strata::parallel
