#include "strata/parallel/comm/gloo_communicator.h"

#include "strata/core/error.h"
#include "strata/parallel/control/control_plane.h"

#ifdef STRATA_WITH_GLOO

// c10d's Gloo header is empty without it (LibTorch was built with it).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>

#include "communicator_checks.h"
#include "staged_tensor.h"

namespace strata::parallel {
namespace {

std::string to_text(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }
std::vector<uint8_t> to_bytes(const std::string& text) { return {text.begin(), text.end()}; }

// c10d's Store over our control store, for ProcessGroupGloo's rendezvous.
class StoreAdapter final : public c10d::Store {
 public:
  explicit StoreAdapter(std::shared_ptr<ControlStoreClient> client) : client_(std::move(client)) {
    timeout_ = client_->options().timeout();
  }
  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    client_->set(key, to_text(value));
  }
  std::vector<uint8_t> compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) override {
    return to_bytes(client_->compare_set(key, to_text(expected), to_text(desired)));
  }
  std::vector<uint8_t> get(const std::string& key) override {
    return to_bytes(client_->get(key, timeout_));
  }
  int64_t add(const std::string& key, int64_t value) override { return client_->add(key, value); }
  bool deleteKey(const std::string& key) override { return client_->remove(key); }
  bool check(const std::vector<std::string>& keys) override { return client_->check(keys); }
  int64_t getNumKeys() override { return client_->num_keys(); }
  void wait(const std::vector<std::string>& keys) override { client_->wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    client_->wait(keys, timeout == kNoTimeout ? timeout_ : timeout);
  }

 private:
  std::shared_ptr<ControlStoreClient> client_;
};

// A Gloo work plus what must happen once it is done (copy a staged buffer back, divide
// for Avg, cast back from a wider dtype), run exactly once.
class GlooWork final : public Work {
 public:
  GlooWork(c10::intrusive_ptr<c10d::Work> work, std::function<void()> finish)
      : work_(std::move(work)), finish_(std::move(finish)) {}
  // c10d's send and receive works block again on a second wait(): wait for them once.
  void wait() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;
    work_->wait();
    if (finish_) finish_();
    done_ = true;
  }
  bool is_completed() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (done_) return true;
    }
    if (!work_->isCompleted()) return false;
    wait();  // rethrows an error, runs finish
    return true;
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::function<void()> finish_;
  std::mutex mutex_;
  bool done_ = false;
};

// Another Work, then `finish` once it is done.
class ThenWork final : public Work {
 public:
  ThenWork(WorkPtr inner, std::function<void()> finish)
      : inner_(std::move(inner)), finish_(std::move(finish)) {}
  void wait() override {
    inner_->wait();
    std::call_once(once_, finish_);
  }
  bool is_completed() override {
    if (!inner_->is_completed()) return false;
    wait();
    return true;
  }

 private:
  WorkPtr inner_;
  std::function<void()> finish_;
  std::once_flag once_;
};

bool gloo_reduces(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
    case at::kDouble:
    case at::kHalf:
    case at::kInt:
    case at::kLong:
    case at::kChar:
    case at::kByte: return true;
    default: return false;
  }
}

// The dtype a reduction runs in when Gloo lacks `dtype`.
at::ScalarType wider(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBool: return at::kByte;
    case at::kShort: return at::kInt;
    case at::kBFloat16: return at::kFloat;
    default: return dtype;
  }
}

c10d::ReduceOp gloo_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return c10d::ReduceOp::MAX;
    case ReduceOp::Min: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM;
  }
}

// A contiguous flat byte view of a contiguous tensor (data movement ignores the dtype).
at::Tensor bytes_view(const at::Tensor& contiguous) {
  if (contiguous.numel() == 0) return at::empty({0}, contiguous.options().dtype(at::kByte));
  return contiguous.reshape({-1}).view(at::kByte);
}

}  // namespace

// A receive from this rank itself (Gloo has no pair to itself): done when the matching
// send arrives.
class SelfRecvWork final : public Work {
 public:
  SelfRecvWork(at::Tensor target, int rank, int tag)
      : target_(std::move(target)), rank_(rank), tag_(tag) {}
  void deliver(const at::Tensor& message) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      detail::check_received_numel(message.numel(), target_.numel(), rank_, tag_);
      target_.copy_(message.view(target_.sizes()));
      done_ = true;
    }
    cv_.notify_all();
  }
  void wait() override {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [this] { return done_; });
  }
  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }

 private:
  at::Tensor target_;
  int rank_, tag_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
};

struct GlooCommunicator::Impl {
  // Messages to this rank itself, by tag, in order: sent and not yet received, or
  // receives posted before their send.
  std::mutex self_mutex;
  std::map<int, std::deque<at::Tensor>> self_messages;
  std::map<int, std::deque<std::shared_ptr<SelfRecvWork>>> self_receives;
  // Gloo matches a receive to a send by (peer, slot), and two messages in flight on one
  // slot get mixed up; MPI orders messages of one (peer, tag). The n-th message of a
  // (peer, tag) goes on slot tag * 2^16 + n mod 2^16: distinct while in flight, and matched
  // in order like MPI's.
  std::mutex slot_mutex;
  std::map<std::pair<int, int>, int> sent, received;  // by (peer, tag)
  int slot(std::map<std::pair<int, int>, int>& counts, int peer, int tag) {
    std::lock_guard<std::mutex> lock(slot_mutex);
    const int n = counts[{peer, tag}]++;
    return tag * 65536 + (n & 0xffff);
  }
  std::shared_ptr<ControlStoreClient> client;
  c10::intrusive_ptr<c10d::Store> store;  // prefixed
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::string prefix;
  std::chrono::milliseconds timeout;
};

std::shared_ptr<GlooCommunicator> GlooCommunicator::create(
    std::shared_ptr<ControlStoreClient> store, int rank, int size, const std::string& prefix,
    std::chrono::milliseconds timeout) {
  STRATA_CHECK(store != nullptr, "gloo communicator: got no control store");
  STRATA_CHECK(size >= 1 && rank >= 0 && rank < size, "gloo communicator rank: got ", rank, " of ",
               size, ", expected 0 <= rank < size");
  auto impl = std::make_unique<Impl>();
  impl->client = store;
  impl->prefix = prefix;
  impl->timeout = timeout;
  impl->store =
      c10::make_intrusive<c10d::PrefixStore>(prefix, c10::make_intrusive<StoreAdapter>(store));
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // Loopback unless told otherwise: jobs of one host, like the store.
  const char* host = std::getenv("STRATA_GLOO_HOST");
  options->devices.push_back(
      c10d::ProcessGroupGloo::createDeviceForHostname(host ? host : "127.0.0.1"));
  options->threads = 1;  // ranks pin their threads; one Gloo worker keeps operations in order
  try {
    impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, rank, size, options);
  } catch (const c10::Error& e) {
    STRATA_FAIL("gloo communicator: rank ", rank, " of ", size, " could not join group \"", prefix,
                "\": ", e.what_without_backtrace());
  }
  return std::shared_ptr<GlooCommunicator>(new GlooCommunicator(std::move(impl), rank, size));
}

GlooCommunicator::GlooCommunicator(std::unique_ptr<Impl> impl, int rank, int size)
    : impl_(std::move(impl)), rank_(rank), size_(size) {}

GlooCommunicator::~GlooCommunicator() = default;

WorkPtr GlooCommunicator::isend(const at::Tensor& tensor, int dst, int tag) {
  detail::check_defined(tensor, "isend tensor");
  detail::check_peer(dst, size_, "isend dst");
  detail::check_tag(tag, "isend");
  STRATA_CHECK(tag < 32768, "gloo isend tag: got ", tag, ", expected less than 32768");
  // Gloo cannot send zero bytes; the receiver's tensor is empty too, and skips as well.
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  if (dst == rank_) {
    std::lock_guard<std::mutex> lock(impl_->self_mutex);
    auto& waiting = impl_->self_receives[tag];
    if (!waiting.empty()) {
      waiting.front()->deliver(tensor.reshape({-1}));
      waiting.pop_front();
    } else {
      impl_->self_messages[tag].push_back(tensor.reshape({-1}).clone());
    }
    return std::make_shared<CompletedWork>();
  }
  at::Tensor buffer = tensor.contiguous();
  std::vector<at::Tensor> tensors{bytes_view(buffer)};
  auto work = impl_->group->send(tensors, dst, impl_->slot(impl_->sent, dst, tag));
  // The buffer lives until the send is done.
  return std::make_shared<GlooWork>(work, [buffer] {});
}

WorkPtr GlooCommunicator::irecv(at::Tensor& tensor, int src, int tag) {
  detail::check_defined(tensor, "irecv tensor");
  detail::check_peer(src, size_, "irecv src");
  detail::check_tag(tag, "irecv");
  STRATA_CHECK(tag < 32768, "gloo irecv tag: got ", tag, ", expected less than 32768");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  if (src == rank_) {
    auto work = std::make_shared<SelfRecvWork>(tensor, rank_, tag);
    std::lock_guard<std::mutex> lock(impl_->self_mutex);
    auto& queued = impl_->self_messages[tag];
    if (!queued.empty()) {
      work->deliver(queued.front());
      queued.pop_front();
    } else {
      impl_->self_receives[tag].push_back(work);
    }
    return work;
  }
  detail::StagedTensor staged = detail::stage(tensor, /*keep_contents=*/false);
  std::vector<at::Tensor> tensors{bytes_view(staged.buffer)};
  auto work = impl_->group->recv(tensors, src, impl_->slot(impl_->received, src, tag));
  return std::make_shared<GlooWork>(work, [staged] { staged.copy_back(); });
}

WorkPtr GlooCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  detail::check_defined(tensor, "allreduce tensor");
  detail::check_reduce_op(tensor.scalar_type(), op, "allreduce");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  const at::ScalarType dtype = tensor.scalar_type();
  at::Tensor buffer;
  if (at::isComplexType(dtype)) {
    buffer = at::view_as_real(tensor.contiguous()).clone();  // Sum and Avg only
  } else if (!gloo_reduces(dtype)) {
    buffer = tensor.to(wider(dtype)).contiguous();
  } else {
    buffer = tensor.contiguous();
  }
  std::vector<at::Tensor> tensors{buffer};
  c10d::AllreduceOptions options;
  options.reduceOp = gloo_op(op);
  auto work = impl_->group->allreduce(tensors, options);
  const int size = size_;
  at::Tensor target = tensor;
  return std::make_shared<GlooWork>(work, [buffer, target, op, size, dtype]() mutable {
    at::Tensor result = at::isComplexType(dtype) ? at::view_as_complex(buffer) : buffer;
    if (op == ReduceOp::Avg) result = result / size;
    if (!result.is_same(target)) target.copy_(result);
  });
}

WorkPtr GlooCommunicator::broadcast(at::Tensor& tensor, int root) {
  detail::check_defined(tensor, "broadcast tensor");
  detail::check_peer(root, size_, "broadcast root");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  detail::StagedTensor staged = detail::stage(tensor, /*keep_contents=*/rank_ == root);
  std::vector<at::Tensor> tensors{bytes_view(staged.buffer)};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  auto work = impl_->group->broadcast(tensors, options);
  return std::make_shared<GlooWork>(work, [staged] { staged.copy_back(); });
}

WorkPtr GlooCommunicator::allgather(const at::Tensor& input, at::Tensor& output) {
  detail::check_allgather(input, output, size_);
  if (input.numel() == 0) return std::make_shared<CompletedWork>();
  at::Tensor in = input.contiguous();
  detail::StagedTensor staged = detail::stage(output, /*keep_contents=*/false);
  std::vector<at::Tensor> inputs{bytes_view(in)};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size_; ++r) outputs[0].push_back(bytes_view(staged.buffer[r]));
  auto work = impl_->group->allgather(outputs, inputs);
  return std::make_shared<GlooWork>(work, [in, staged] { staged.copy_back(); });
}

WorkPtr GlooCommunicator::reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) {
  detail::check_reduce_scatter(input, output, size_, op);
  if (output.numel() == 0) return std::make_shared<CompletedWork>();
  // ProcessGroupGloo has no reduce_scatter: reduce everything, keep this rank's row.
  at::Tensor all = input.clone();
  WorkPtr reduce = allreduce(all, op);
  const int row = rank_;
  at::Tensor target = output;
  return std::make_shared<ThenWork>(reduce,
                                    [all, target, row]() mutable { target.copy_(all[row]); });
}

WorkPtr GlooCommunicator::alltoall(const at::Tensor& input, at::Tensor& output,
                                   const std::vector<int64_t>& send_splits,
                                   const std::vector<int64_t>& recv_splits) {
  const detail::AlltoallLayout layout =
      detail::check_alltoall(input, output, send_splits, recv_splits, size_);
  if (input.numel() == 0 && output.numel() == 0) return std::make_shared<CompletedWork>();
  at::Tensor in = input.contiguous();
  detail::StagedTensor staged = detail::stage(output, /*keep_contents=*/false);
  // Gloo splits in rows of its tensors: send flat bytes, splits in bytes.
  const int64_t row_bytes = layout.row_numel * static_cast<int64_t>(input.element_size());
  std::vector<int64_t> out_counts, in_counts;
  for (int r = 0; r < size_; ++r) {
    in_counts.push_back(layout.send_rows[static_cast<size_t>(r)] * row_bytes);
    out_counts.push_back(layout.recv_rows[static_cast<size_t>(r)] * row_bytes);
  }
  at::Tensor in_bytes = bytes_view(in), out_bytes = bytes_view(staged.buffer);
  auto work = impl_->group->alltoall_base(out_bytes, in_bytes, out_counts, in_counts);
  return std::make_shared<GlooWork>(work, [in, staged] { staged.copy_back(); });
}

WorkPtr GlooCommunicator::barrier() {
  return std::make_shared<GlooWork>(impl_->group->barrier(), nullptr);
}

std::shared_ptr<Communicator> GlooCommunicator::split(int color, int key) {
  // Everyone's (color, key), then the members of this rank's color ordered by (key, rank).
  at::Tensor mine = at::tensor({static_cast<int64_t>(color), static_cast<int64_t>(key)}, at::kLong);
  at::Tensor all = at::empty({size_, 2}, at::kLong);
  allgather(mine, all)->wait();
  const int split_index = splits_++;
  if (color < 0) return nullptr;
  std::vector<std::pair<int64_t, int>> members;
  for (int r = 0; r < size_; ++r) {
    if (all[r][0].item<int64_t>() == color) members.emplace_back(all[r][1].item<int64_t>(), r);
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) new_rank = static_cast<int>(i);
  }
  return create(
      impl_->client, new_rank, static_cast<int>(members.size()),
      impl_->prefix + "/split" + std::to_string(split_index) + "/color" + std::to_string(color),
      impl_->timeout);
}

bool gloo_available() { return true; }

}  // namespace strata::parallel

#else  // !STRATA_WITH_GLOO

namespace strata::parallel {

struct GlooCommunicator::Impl {};

std::shared_ptr<GlooCommunicator> GlooCommunicator::create(std::shared_ptr<ControlStoreClient>, int,
                                                           int, const std::string&,
                                                           std::chrono::milliseconds) {
  STRATA_FAIL(
      "gloo communicator: strata was built without Gloo (install libgloo-dev and rebuild); "
      "start the job with mpirun instead");
}
GlooCommunicator::~GlooCommunicator() = default;
WorkPtr GlooCommunicator::isend(const at::Tensor&, int, int) { return nullptr; }
WorkPtr GlooCommunicator::irecv(at::Tensor&, int, int) { return nullptr; }
WorkPtr GlooCommunicator::allreduce(at::Tensor&, ReduceOp) { return nullptr; }
WorkPtr GlooCommunicator::broadcast(at::Tensor&, int) { return nullptr; }
WorkPtr GlooCommunicator::allgather(const at::Tensor&, at::Tensor&) { return nullptr; }
WorkPtr GlooCommunicator::reduce_scatter(const at::Tensor&, at::Tensor&, ReduceOp) {
  return nullptr;
}
WorkPtr GlooCommunicator::alltoall(const at::Tensor&, at::Tensor&, const std::vector<int64_t>&,
                                   const std::vector<int64_t>&) {
  return nullptr;
}
WorkPtr GlooCommunicator::barrier() { return nullptr; }
std::shared_ptr<Communicator> GlooCommunicator::split(int, int) { return nullptr; }
bool gloo_available() { return false; }

}  // namespace strata::parallel

#endif
