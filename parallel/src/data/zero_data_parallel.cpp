#include "strata/parallel/data/zero_data_parallel.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "gradient_buckets.h"
#include "strata/core/checkpoint_restore.h"
#include "strata/core/error.h"
#include "strata/core/parameters.h"
#include "strata/parallel/data/global_grad_norm.h"
#include "strata/parallel/data/sharded_checkpoint.h"

namespace strata::parallel {
namespace detail {

namespace {

// Frees `t`'s storage in place: every tensor sharing it (the module's parameters, the
// tensors autograd saved for backward) keeps its shape and sees the memory again once
// refill() has run, so nothing needs to be re-pointed.
void release_storage(const at::Tensor& t) { t.storage().unsafeGetStorageImpl()->reset(); }

void refill_storage(const at::Tensor& t, size_t nbytes) {
  c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(storage->allocator()->allocate(nbytes));
  storage->set_nbytes(nbytes);
}

}  // namespace

// Owns the buckets, the shards and the collectives. Autograd hooks hold it weakly, so that
// a destroyed ZeroDataParallel leaves harmless hooks behind.
class ShardedReducer : public std::enable_shared_from_this<ShardedReducer> {
 public:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;           // before padding
    int64_t chunk = 0;           // one rank's shard: ceil(numel / world)
    at::Tensor param_buffer;     // [chunk * world], the full parameters (stage 3: when gathered)
    at::Tensor shard;            // this rank's parameters: the optimizer's tensor
    at::Tensor grad_buffer;      // [chunk * world], the full gradients (stages 2, 3: in backward)
    std::vector<at::Tensor> grad_views;
    at::Tensor shard_grad;  // [chunk], the averaged gradient of the shard
    size_t pending = 0;     // gradients not yet ready this backward
    WorkPtr reduce_work;    // the reduce-scatter in flight
    WorkPtr gather_work;    // stage 3: the all-gather in flight
    bool gathered = true;   // stage 3: param_buffer holds the full parameters
  };

  // `units`: with stage 3, each layer's indices into `params` (in forward order), one
  // bucket each; otherwise empty and the buckets follow the caps.
  ShardedReducer(std::vector<at::Tensor> params, std::vector<std::vector<size_t>> units,
                 CommunicatorPtr comm, const ZeroOptions& options)
      : params_(std::move(params)), comm_(std::move(comm)), stage_(options.stage()) {
    std::vector<std::vector<size_t>> buckets;
    if (stage_ == 3) {
      buckets.assign(units.rbegin(), units.rend());
    } else {
      buckets =
          assign_buckets(params_, options.bucket_cap_bytes(), options.first_bucket_cap_bytes());
    }
    location_.resize(params_.size());
    const int world = comm_->size();
    const int rank = comm_->rank();
    torch::NoGradGuard no_grad;
    for (auto& indices : buckets) {
      Bucket bucket;
      bucket.params = std::move(indices);
      const at::Tensor& first = params_[bucket.params.front()];
      for (size_t k = 0; k < bucket.params.size(); ++k) {
        const at::Tensor& p = params_[bucket.params[k]];
        STRATA_CHECK(p.scalar_type() == first.scalar_type() && p.device() == first.device(),
                     "ZeRO stage 3: a layer's parameters must share one dtype and device, got ",
                     p.scalar_type(), " on ", p.device(), " and ", first.scalar_type(), " on ",
                     first.device());
        location_[bucket.params[k]] = {buckets_.size(), k};
        bucket.numel += p.numel();
      }
      bucket.chunk = (bucket.numel + world - 1) / world;
      // The padding (at most world - 1 elements) stays zero: its gradient is zero, so
      // SGD, Adam and AdamW leave it zero.
      bucket.param_buffer = at::zeros({bucket.chunk * world}, first.options());
      int64_t offset = 0;
      for (size_t i : bucket.params) {
        at::Tensor& p = params_[i];
        bucket.param_buffer.narrow(0, offset, p.numel()).copy_(p.reshape({-1}));
        const std::vector<int64_t> sizes = p.sizes().vec();  // set_ replaces p's own
        p.set_(bucket.param_buffer.storage(), offset, sizes, c10::contiguous_strides(sizes));
        offset += p.numel();
      }
      if (stage_ == 3) {
        bucket.shard = bucket.param_buffer.narrow(0, rank * bucket.chunk, bucket.chunk).clone();
      } else {
        bucket.shard = storage_slice(bucket.param_buffer, rank * bucket.chunk, {bucket.chunk});
      }
      bucket.shard.requires_grad_(true);
      bucket.shard_grad = at::zeros({bucket.chunk}, first.options());
      bucket.shard.mutable_grad() = bucket.shard_grad;
      bucket.pending = bucket.params.size();
      buckets_.push_back(std::move(bucket));
    }
    if (stage_ == 1) {
      for (auto& bucket : buckets_) allocate_gradients(bucket);
    }
    if (stage_ == 3) release_all();
  }

  void install_hooks() {
    std::weak_ptr<ShardedReducer> weak = weak_from_this();
    hooks_.install(params_, [weak](size_t i) {
      if (auto reducer = weak.lock()) reducer->on_gradient_ready(i);
    });
  }
  void remove_hooks() { hooks_.remove(); }

  bool sync_enabled = true;
  const std::vector<at::Tensor>& params() const { return params_; }
  std::vector<Bucket>& buckets() { return buckets_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }

  std::vector<at::Tensor> shards() const {
    std::vector<at::Tensor> shards;
    for (const auto& bucket : buckets_) shards.push_back(bucket.shard);
    return shards;
  }

  // Stage 3: starts gathering bucket b's full parameters, unless they are there or coming.
  void start_gather(size_t b) {
    Bucket& bucket = buckets_[b];
    if (bucket.gathered || bucket.gather_work) return;
    refill_storage(bucket.param_buffer,
                   bucket.param_buffer.numel() * bucket.param_buffer.element_size());
    at::Tensor rows = bucket.param_buffer.view({comm_->size(), bucket.chunk});
    bucket.gather_work = comm_->allgather(bucket.shard.detach(), rows);
  }
  void wait_gather(size_t b) {
    Bucket& bucket = buckets_[b];
    start_gather(b);
    if (bucket.gather_work) {
      bucket.gather_work->wait();
      bucket.gather_work.reset();
    }
    bucket.gathered = true;
  }
  void release(size_t b) {
    Bucket& bucket = buckets_[b];
    if (bucket.gather_work) wait_gather(b);  // never free memory a collective writes to
    if (!bucket.gathered) return;
    release_storage(bucket.param_buffer);
    bucket.gathered = false;
  }
  void release_all() {
    for (size_t b = 0; b < buckets_.size(); ++b) release(b);
  }
  void gather_all() {
    for (size_t b = 0; b < buckets_.size(); ++b) start_gather(b);
    for (size_t b = 0; b < buckets_.size(); ++b) wait_gather(b);
  }

  // Stages 1, 2: after the optimizer stepped the shards (views of param_buffer), every
  // rank's shard into every rank's param_buffer.
  void allgather_parameters() {
    std::vector<WorkPtr> works;
    std::vector<at::Tensor> sends;  // the shard aliases a row of the output: send a copy
    for (auto& bucket : buckets_) {
      sends.push_back(bucket.shard.detach().clone());
      at::Tensor rows = bucket.param_buffer.view({comm_->size(), bucket.chunk});
      works.push_back(comm_->allgather(sends.back(), rows));
    }
    for (auto& w : works) w->wait();
  }

  void zero_grad() {
    torch::NoGradGuard no_grad;
    for (auto& bucket : buckets_) {
      bucket.shard_grad.zero_();
      // Gradients accumulated outside the bucket (under no_sync, before it existed) go too.
      for (size_t k = 0; k < bucket.params.size(); ++k) {
        at::Tensor& p = params_[bucket.params[k]];
        const bool in_slot = !bucket.grad_views.empty() && p.grad().defined() &&
                             p.grad().data_ptr() == bucket.grad_views[k].data_ptr();
        if (p.grad().defined() && !in_slot) p.mutable_grad().reset();
      }
      if (stage_ == 1) {
        bucket.grad_buffer.zero_();
      } else {
        free_gradients(bucket);
      }
    }
  }

 private:
  void allocate_gradients(Bucket& bucket) {
    if (bucket.grad_buffer.defined()) return;
    torch::NoGradGuard no_grad;
    bucket.grad_buffer = at::zeros_like(bucket.param_buffer);
    int64_t offset = 0;
    for (size_t i : bucket.params) {
      bucket.grad_views.push_back(storage_slice(bucket.grad_buffer, offset, params_[i].sizes()));
      // Backward accumulates into the slot from now on (unless a gradient already exists:
      // move_grad_into_bucket copies that one in).
      if (!params_[i].grad().defined()) params_[i].mutable_grad() = bucket.grad_views.back();
      offset += params_[i].numel();
    }
  }
  void free_gradients(Bucket& bucket) {
    for (size_t i : bucket.params) {
      if (params_[i].grad().defined()) params_[i].mutable_grad().reset();
    }
    bucket.grad_views.clear();
    bucket.grad_buffer.reset();
  }

  // Makes params_[i].grad live in its bucket slot, so that the reduce-scatter reads the
  // flat buffer and later accumulations stay there.
  void move_grad_into_bucket(size_t i) {
    auto [b, k] = location_[i];
    Bucket& bucket = buckets_[b];
    allocate_gradients(bucket);
    move_into_slot(params_[i].mutable_grad(), bucket.grad_views[k]);
  }

  void on_gradient_ready(size_t i) {
    if (!finalize_queued_) {
      // Runs when this backward pass ends, on the thread that called backward.
      std::weak_ptr<ShardedReducer> weak = weak_from_this();
      torch::autograd::Engine::get_default_engine().queue_callback([weak] {
        if (auto reducer = weak.lock()) reducer->finish_backward();
      });
      finalize_queued_ = true;
    }
    const size_t b = location_[i].first;
    Bucket& bucket = buckets_[b];
    STRATA_CHECK(bucket.pending > 0, "ZeRO: parameter ", i,
                 " received its gradient twice in one backward pass");
    --bucket.pending;
    if (sync_enabled) {
      move_grad_into_bucket(i);
      launch_ready_buckets(/*force=*/false);
    }
    // The layer's backward is over: its full parameters are not needed until the next
    // forward.
    if (stage_ == 3 && bucket.pending == 0) release(b);
    // MPI's non-blocking collectives progress only inside MPI calls: poll the ones in flight.
    for (size_t k = 0; k < next_to_launch_; ++k) buckets_[k].reduce_work->is_completed();
  }

  // Launches buckets strictly in index order, so every rank issues the same sequence of
  // collectives even if its gradients arrive in another order.
  void launch_ready_buckets(bool force) {
    torch::NoGradGuard no_grad;
    while (next_to_launch_ < buckets_.size()) {
      Bucket& bucket = buckets_[next_to_launch_];
      if (bucket.pending > 0 && !force) break;
      for (size_t i : bucket.params) move_grad_into_bucket(i);
      bucket.grad_buffer.div_(comm_->size());
      at::Tensor rows = bucket.grad_buffer.view({comm_->size(), bucket.chunk});
      bucket.reduce_work = comm_->reduce_scatter(rows, bucket.shard_grad, ReduceOp::Sum);
      ++next_to_launch_;
    }
  }

  void finish_backward() {
    finalize_queued_ = false;
    if (sync_enabled) {
      // Parameters that got no gradient in this backward (unused paths) count as zero, as
      // long as every rank reduces every bucket.
      launch_ready_buckets(/*force=*/true);
      torch::NoGradGuard no_grad;
      for (auto& bucket : buckets_) {
        bucket.reduce_work->wait();
        bucket.reduce_work.reset();
        // The full gradients are reduced into the shard: stage 1 keeps the buffer for the
        // next backward to accumulate into, stages 2 and 3 free it.
        if (stage_ == 1) {
          bucket.grad_buffer.zero_();
        } else {
          free_gradients(bucket);
        }
      }
      next_to_launch_ = 0;
    }
    for (auto& bucket : buckets_) bucket.pending = bucket.params.size();
    if (stage_ == 3) release_all();
  }

  std::vector<at::Tensor> params_;
  CommunicatorPtr comm_;
  int stage_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> location_;  // param -> (bucket, slot)
  GradientReadyHooks hooks_;
  size_t next_to_launch_ = 0;
  bool finalize_queued_ = false;
};

}  // namespace detail

namespace {

int64_t allocated_bytes(const at::Tensor& t) {
  return t.defined() && t.storage().data() != nullptr ? t.numel() * t.element_size() : 0;
}

}  // namespace

int64_t optimizer_state_bytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  const auto add = [&](const at::Tensor& t) {
    if (t.defined()) bytes += t.numel() * t.element_size();
  };
  for (const auto& item : optimizer.state()) {
    const torch::optim::OptimizerParamState* state = item.second.get();
    if (const auto* s = dynamic_cast<const torch::optim::SGDParamState*>(state)) {
      add(s->momentum_buffer());
    } else if (const auto* s = dynamic_cast<const torch::optim::AdamParamState*>(state)) {
      add(s->exp_avg()), add(s->exp_avg_sq()), add(s->max_exp_avg_sq());
    } else if (const auto* s = dynamic_cast<const torch::optim::AdamWParamState*>(state)) {
      add(s->exp_avg()), add(s->exp_avg_sq()), add(s->max_exp_avg_sq());
    } else if (const auto* s = dynamic_cast<const torch::optim::AdagradParamState*>(state)) {
      add(s->sum());
    } else if (const auto* s = dynamic_cast<const torch::optim::RMSpropParamState*>(state)) {
      add(s->square_avg()), add(s->momentum_buffer()), add(s->grad_avg());
    }
  }
  return bytes;
}

ZeroDataParallel::ZeroDataParallel(std::shared_ptr<torch::nn::Module> module, CommunicatorPtr comm,
                                   const OptimizerFactory& make_optimizer, ZeroOptions options)
    : module_(std::move(module)), comm_(std::move(comm)), options_(options) {
  STRATA_CHECK(module_ != nullptr, "ZeroDataParallel: module is null");
  STRATA_CHECK(comm_ != nullptr, "ZeroDataParallel: communicator is null");
  STRATA_CHECK(options_.stage() >= 1 && options_.stage() <= 3, "ZeRO stage: got ", options_.stage(),
               ", expected 1, 2 or 3 (0 is DistributedDataParallel)");
  // Each tensor once: a tied weight has one gradient, reduced once.
  std::vector<at::Tensor> params;
  for (const auto& p : core::unique_parameters(*module_)) {
    if (p.requires_grad()) params.push_back(p);
  }
  STRATA_CHECK(!params.empty(), "ZeroDataParallel: the module has no trainable parameters");
  std::vector<std::vector<size_t>> units;
  if (options_.stage() == 3) {
    auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(module_.get());
    STRATA_CHECK(sequential != nullptr,
                 "ZeRO stage 3: the module must be a torch::nn::Sequential (its layers are "
                 "gathered one at a time), got ",
                 module_->name());
    std::unordered_set<const void*> seen;
    unit_of_layer_.assign(sequential->size(), -1);
    for (size_t layer = 0; layer < sequential->size(); ++layer) {
      std::vector<size_t> unit;
      for (const auto& p : core::unique_parameters(*sequential->ptr(layer))) {
        if (!p.requires_grad()) continue;
        STRATA_CHECK(seen.insert(p.unsafeGetTensorImpl()).second,
                     "ZeRO stage 3: a parameter of layer ", layer,
                     " is shared with an earlier layer (tied weights): not supported yet, use "
                     "stage 1 or 2");
        const auto it = std::find_if(params.begin(), params.end(),
                                     [&](const at::Tensor& q) { return q.is_same(p); });
        unit.push_back(static_cast<size_t>(it - params.begin()));
      }
      if (!unit.empty()) {
        unit_of_layer_[layer] = static_cast<int>(units.size());
        units.push_back(std::move(unit));
      }
    }
    num_units_ = units.size();
  }
  detail::broadcast_from_rank0(*comm_, module_->parameters());
  detail::broadcast_from_rank0(*comm_, module_->buffers());
  reducer_ = std::make_shared<detail::ShardedReducer>(std::move(params), std::move(units), comm_,
                                                      options_);
  reducer_->install_hooks();
  if (make_optimizer) {
    optimizer_ = make_optimizer(reducer_->shards());
    STRATA_CHECK(optimizer_ != nullptr, "ZeroDataParallel: the optimizer factory returned null");
  }
}

ZeroDataParallel::ZeroDataParallel(std::shared_ptr<torch::nn::Module> module, CommunicatorPtr comm,
                                   ZeroOptions options)
    : ZeroDataParallel(std::move(module), std::move(comm), OptimizerFactory(), options) {}

torch::optim::Optimizer& ZeroDataParallel::optimizer() {
  STRATA_CHECK(optimizer_ != nullptr,
               "ZeroDataParallel: constructed without an optimizer factory (pass yours to step)");
  return *optimizer_;
}

ZeroDataParallel::~ZeroDataParallel() { reducer_->remove_hooks(); }

at::Tensor ZeroDataParallel::forward(const at::Tensor& input) {
  auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(module_.get());
  STRATA_CHECK(sequential != nullptr,
               "ZeroDataParallel::forward: the module must be a torch::nn::Sequential, got ",
               module_->name(), " (call its forward directly with stages 1 and 2)");
  if (options_.stage() != 3) return sequential->forward(input);
  // Bucket b holds unit num_units_ - 1 - b (buckets are in backward order).
  const auto bucket_of_unit = [&](int unit) { return num_units_ - 1 - static_cast<size_t>(unit); };
  std::weak_ptr<detail::ShardedReducer> weak = reducer_;
  at::Tensor x = input;
  size_t layer = 0;
  for (auto& child : *sequential) {
    const int unit = unit_of_layer_[layer++];
    if (unit < 0) {
      x = child.forward(x);
      continue;
    }
    const size_t b = bucket_of_unit(unit);
    reducer_->wait_gather(b);
    if (static_cast<size_t>(unit) + 1 < num_units_) reducer_->start_gather(b - 1);
    x = child.forward(x);
    if (x.requires_grad()) {
      // Before this layer's backward: its parameters again, and the layer below's on the way.
      const size_t below = unit > 0 ? b + 1 : b;
      x.register_hook([weak, b, below](const at::Tensor&) {
        if (auto reducer = weak.lock()) {
          reducer->wait_gather(b);
          reducer->start_gather(below);
        }
      });
    }
    reducer_->release(b);
  }
  return x;
}

void ZeroDataParallel::zero_grad() { reducer_->zero_grad(); }

void ZeroDataParallel::step() { step(optimizer()); }

void ZeroDataParallel::step(torch::optim::Optimizer& optimizer) {
  optimizer.step();
  if (options_.stage() == 3) {
    reducer_->release_all();  // gathered copies are stale now
  } else {
    reducer_->allgather_parameters();
  }
}

double ZeroDataParallel::clip_grad_norm(double max_norm) {
  // Each shard's gradient (a view of the shard's .grad) is held by this rank only.
  const std::vector<at::Tensor> shards = reducer_->shards();
  const double norm = global_grad_norm({{shards, 1}}, *comm_);
  clip_gradients(shards, norm, max_norm);
  return norm;
}

void ZeroDataParallel::gather_parameters() {
  if (options_.stage() == 3) reducer_->gather_all();
}

void ZeroDataParallel::release_parameters() {
  if (options_.stage() == 3) reducer_->release_all();
}

ZeroDataParallel::NoSyncGuard::NoSyncGuard(ZeroDataParallel& zero)
    : zero_(zero), previous_(zero.reducer_->sync_enabled) {
  zero_.reducer_->sync_enabled = false;
}

ZeroDataParallel::NoSyncGuard::~NoSyncGuard() { zero_.reducer_->sync_enabled = previous_; }

int64_t ZeroDataParallel::num_buckets() const {
  return static_cast<int64_t>(reducer_->buckets().size());
}

std::vector<int64_t> ZeroDataParallel::bucket_numels() const {
  std::vector<int64_t> numels;
  for (const auto& bucket : reducer_->buckets()) numels.push_back(bucket.numel);
  return numels;
}

std::vector<at::Tensor> ZeroDataParallel::shards() const { return reducer_->shards(); }

int64_t ZeroDataParallel::state_bytes() const {
  STRATA_CHECK(optimizer_ != nullptr, "ZeroDataParallel: constructed without an optimizer factory");
  return state_bytes(*optimizer_);
}

int64_t ZeroDataParallel::state_bytes(const torch::optim::Optimizer& optimizer) const {
  int64_t bytes = optimizer_state_bytes(optimizer);
  for (const auto& bucket : reducer_->buckets()) {
    bytes += allocated_bytes(bucket.param_buffer) + allocated_bytes(bucket.grad_buffer) +
             allocated_bytes(bucket.shard_grad);
    if (options_.stage() == 3) bytes += allocated_bytes(bucket.shard);
  }
  for (const auto& p : module_->parameters()) {
    if (!p.requires_grad()) bytes += allocated_bytes(p);
  }
  return bytes;
}

// ---------------------------------------------------------------- checkpoints

namespace {

// A module whose parameter "<b>" is shard b: core's checkpoint functions read and set an
// optimizer's state through parameter names, and the optimizer's parameters are the shards.
struct ShardsModule : torch::nn::Module {
  explicit ShardsModule(const std::vector<at::Tensor>& shards) {
    for (size_t b = 0; b < shards.size(); ++b) register_parameter(std::to_string(b), shards[b]);
  }
};

// Every name of each parameter of `module` (a tied weight has several).
std::unordered_map<const void*, std::vector<std::string>> parameter_names(
    const torch::nn::Module& module) {
  std::unordered_map<const void*, std::vector<std::string>> names;
  for (const auto& item : module.named_parameters()) {
    names[item.value().unsafeGetTensorImpl()].push_back(item.key());
  }
  return names;
}

constexpr const char* kOptimizerPrefix = "optimizer/";

}  // namespace

std::vector<core::CheckpointPiece> ZeroDataParallel::checkpoint_pieces(
    torch::optim::Optimizer& optimizer) const {
  const std::vector<at::Tensor> shards = reducer_->shards();
  ShardsModule view(shards);
  // The optimizer's state of shard b: fields["<b>"]["exp_avg"], ...
  std::map<std::string, std::map<std::string, at::Tensor>> fields;
  for (const core::CheckpointTensor& t : core::checkpoint_contents(view, &optimizer).tensors) {
    if (t.kind != "optimizer") continue;
    const std::string rest = t.name.substr(std::string(kOptimizerPrefix).size());
    const size_t slash = rest.find('/');
    fields[rest.substr(0, slash)][rest.substr(slash + 1)] = t.tensor;
  }
  const auto names = parameter_names(*module_);
  const int64_t rank = comm_->rank();
  std::vector<core::CheckpointPiece> pieces;
  const auto& buckets = reducer_->buckets();
  for (size_t b = 0; b < buckets.size(); ++b) {
    const auto& bucket = buckets[b];
    const int64_t lo = rank * bucket.chunk, hi = lo + bucket.chunk;
    const auto& state = fields[std::to_string(b)];
    int64_t offset = 0;
    for (size_t i : bucket.params) {
      const at::Tensor& p = reducer_->params()[i];
      const int64_t n = p.numel();
      const int64_t first = std::max(offset, lo), last = std::min(offset + n, hi);
      // A parameter of no elements is written by rank 0; others by the ranks they overlap.
      const bool owner = n == 0 ? rank == 0 : lo <= offset && offset < hi;
      const bool overlaps = first < last || (n == 0 && owner);
      const int64_t start = overlaps ? first - offset : 0;
      const int64_t count = std::max<int64_t>(last - first, 0);
      const auto slice = [&](const at::Tensor& t) {
        return t.detach().narrow(0, overlaps ? first - lo : 0, count);
      };
      for (const std::string& name : names.at(p.unsafeGetTensorImpl())) {
        const std::vector<int64_t> shape = p.sizes().vec();
        if (overlaps) pieces.push_back({name, "parameter", shape, start, slice(bucket.shard)});
        for (const auto& [field, tensor] : state) {
          const std::string key = kOptimizerPrefix + name + "/" + field;
          if (tensor.dim() == 0) {
            if (owner) pieces.push_back({key, "optimizer", {}, 0, tensor});
          } else if (overlaps) {
            pieces.push_back({key, "optimizer", shape, start, slice(tensor)});
          }
        }
      }
      offset += n;
    }
  }
  // Frozen parameters and buffers are the same on every rank: rank 0 writes them whole.
  if (rank == 0) {
    for (const core::CheckpointTensor& t : core::checkpoint_contents(*module_, nullptr).tensors) {
      if (t.kind == "parameter" && t.tensor.requires_grad()) continue;
      pieces.push_back({t.name, t.kind, t.tensor.sizes().vec(), 0, t.tensor.detach()});
    }
  }
  return pieces;
}

nlohmann::json ZeroDataParallel::optimizer_json(torch::optim::Optimizer& optimizer) const {
  ShardsModule view(reducer_->shards());
  return core::checkpoint_contents(view, &optimizer).optimizer;
}

void ZeroDataParallel::save_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                       int64_t step, const nlohmann::json& extra) {
  save_sharded_checkpoint(path, checkpoint_pieces(optimizer), optimizer_json(optimizer), comm_,
                          step, extra);
}

int64_t ZeroDataParallel::load_checkpoint(const std::string& path,
                                          torch::optim::Optimizer& optimizer,
                                          nlohmann::json* extra) {
  const std::vector<at::Tensor> shards = reducer_->shards();
  ShardsModule view(shards);
  core::CheckpointReader reader(path);
  // The optimizer first, so that a checkpoint of another one changes nothing.
  const nlohmann::json live = optimizer_json(optimizer);
  const nlohmann::json& saved = reader.optimizer();
  STRATA_CHECK(saved.is_null() || saved.at("type") == live.at("type"), "checkpoint ", path,
               " holds ", saved.is_null() ? "no" : saved.at("type").get<std::string>(),
               " optimizer state, the optimizer is ", live.at("type").get<std::string>());
  STRATA_CHECK(saved.is_null() || saved.at("lr").size() == optimizer.param_groups().size(),
               "checkpoint ", path, " has ", saved.is_null() ? 0 : saved.at("lr").size(),
               " optimizer param groups, the optimizer has ", optimizer.param_groups().size());

  // The whole parameters and buffers into the module, verified by core (stage 3 gathers
  // the parameters first: the module's tensors are views of the full buckets).
  gather_parameters();
  int64_t step = 0;
  try {
    step = core::load_checkpoint(path, *module_, nullptr, extra);
  } catch (...) {
    release_parameters();
    throw;
  }
  torch::NoGradGuard no_grad;
  const int64_t rank = comm_->rank();
  const auto names = parameter_names(*module_);
  core::CheckpointContents contents;
  auto& buckets = reducer_->buckets();
  for (size_t b = 0; b < buckets.size(); ++b) {
    auto& bucket = buckets[b];
    // Stages 1, 2: the shard is a view of the loaded buckets; stage 3 copies it out.
    if (stage() == 3)
      bucket.shard.copy_(bucket.param_buffer.narrow(0, rank * bucket.chunk, bucket.chunk));
    contents.tensors.push_back({std::to_string(b), "parameter", bucket.shard});
    // Each state field of the bucket's parameters laid out as the bucket is, this rank's
    // chunk kept; a scalar field (Adam's step) is the first parameter's.
    std::map<std::string, at::Tensor> full;
    int64_t offset = 0;
    for (size_t i : bucket.params) {
      const at::Tensor& p = reducer_->params()[i];
      const std::string prefix = kOptimizerPrefix + names.at(p.unsafeGetTensorImpl()).front() + "/";
      for (const core::CheckpointReader::Entry& entry : reader.entries()) {
        if (entry.name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string field = entry.name.substr(prefix.size());
        const at::Tensor value = reader.read(entry.name);
        if (value.dim() == 0) {
          if (!full.count(field)) full[field] = value;
          continue;
        }
        STRATA_CHECK(value.numel() == p.numel(), "checkpoint ", path, ": optimizer state '",
                     entry.name, "' has shape ", value.sizes(), ", the parameter ", p.sizes());
        at::Tensor& flat = full[field];
        if (!flat.defined()) flat = at::zeros({bucket.chunk * comm_->size()}, value.options());
        flat.narrow(0, offset, p.numel()).copy_(value.reshape({-1}));
      }
      offset += p.numel();
    }
    for (const auto& [field, tensor] : full) {
      contents.tensors.push_back(
          {kOptimizerPrefix + std::to_string(b) + "/" + field, "optimizer",
           tensor.dim() == 0 ? tensor
                             : tensor.narrow(0, rank * bucket.chunk, bucket.chunk).clone()});
    }
  }
  if (stage() == 3) {
    reducer_->release_all();
  }
  core::restore_checkpoint_contents(contents, view, &optimizer);
  if (!saved.is_null()) {
    for (size_t g = 0; g < optimizer.param_groups().size(); ++g)
      optimizer.param_groups()[g].options().set_lr(saved.at("lr")[g].get<double>());
  }
  return step;
}

}  // namespace strata::parallel
