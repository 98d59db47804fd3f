#include "strata/parallel/data/distributed_data_parallel.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <algorithm>

#include "gradient_buckets.h"
#include "strata/core/error.h"
#include "strata/core/parameters.h"

namespace strata::parallel {
namespace detail {

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
    hooks_.install(params_, [weak](size_t i) {
      if (auto reducer = weak.lock()) reducer->on_gradient_ready(i);
    });
  }

  void remove_hooks() { hooks_.remove(); }

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

  void build_buckets(const DistributedDataParallelOptions& options) {
    location_.resize(params_.size());
    for (auto& indices :
         assign_buckets(params_, options.bucket_cap_bytes(), options.first_bucket_cap_bytes())) {
      for (size_t k = 0; k < indices.size(); ++k) location_[indices[k]] = {buckets_.size(), k};
      buckets_.emplace_back();
      buckets_.back().params = std::move(indices);
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
    move_into_slot(params_[i].mutable_grad(), buckets_[b].views[k]);
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
  GradientReadyHooks hooks_;
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

void DistributedDataParallel::broadcast_state() {
  std::vector<at::Tensor> params;
  for (const auto& p : module_->parameters()) {
    if (!contains(expert_params_, p)) params.push_back(p);
  }
  detail::broadcast_from_rank0(*comm_, params);
  if (!expert_params_.empty()) detail::broadcast_from_rank0(*expert_comm_, expert_params_);
  broadcast_buffers();
}

void DistributedDataParallel::broadcast_buffers() {
  detail::broadcast_from_rank0(*comm_, module_->buffers());
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
