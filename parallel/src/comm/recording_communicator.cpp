#include "strata/parallel/comm/recording_communicator.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <utility>

#include "strata/core/error.h"

namespace strata::parallel {
namespace {

std::string bytes_of(const at::Tensor& t) {
  return std::to_string(t.numel() * static_cast<int64_t>(t.element_size())) + " bytes";
}

// Ends its recorder entry once: at wait(), when found completed, or when dropped.
class RecordedWork final : public Work {
 public:
  RecordedWork(WorkPtr inner, core::FlightRecorder& recorder, uint64_t sequence)
      : inner_(std::move(inner)), recorder_(recorder), sequence_(sequence) {}
  ~RecordedWork() override { finish(); }
  void wait() override {
    // The time this thread is blocked here is time it waits for peers (or the network):
    // the straggler report takes it out of a step to see how busy the rank itself was.
    const auto start = std::chrono::steady_clock::now();
    try {
      inner_->wait();
    } catch (...) {
      finish();
      throw;
    }
    recorder_.add_blocked(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    finish();
  }
  bool is_completed() override {
    const bool done = inner_->is_completed();
    if (done) finish();
    return done;
  }

 private:
  void finish() {
    if (!ended_.exchange(true)) recorder_.end(sequence_);
  }
  WorkPtr inner_;
  core::FlightRecorder& recorder_;
  uint64_t sequence_;
  std::atomic<bool> ended_{false};
};

}  // namespace

RecordingCommunicator::RecordingCommunicator(CommunicatorPtr inner, core::FlightRecorder& recorder,
                                             std::vector<int> world_ranks)
    : inner_(std::move(inner)), recorder_(recorder), world_ranks_(std::move(world_ranks)) {
  STRATA_CHECK(inner_ != nullptr, "recording communicator: got no communicator to wrap");
  is_world_ = world_ranks_.empty();
  if (is_world_) {
    for (int r = 0; r < inner_->size(); ++r) world_ranks_.push_back(r);
  }
  STRATA_CHECK_EQ(static_cast<int>(world_ranks_.size()), inner_->size(),
                  "recording communicator: number of world ranks");
}

int RecordingCommunicator::world_rank(int group_rank) const {
  if (group_rank < 0 || group_rank >= static_cast<int>(world_ranks_.size())) return group_rank;
  return world_ranks_[static_cast<size_t>(group_rank)];
}

std::string RecordingCommunicator::group() const {
  if (is_world_) return "world of " + std::to_string(world_ranks_.size());
  std::string out = "group of " + std::to_string(world_ranks_.size()) + " (ranks";
  for (int r : world_ranks_) out += " " + std::to_string(r);
  return out + ")";
}

WorkPtr RecordingCommunicator::record(const std::string& what, int peer,
                                      const std::function<WorkPtr()>& start) {
  const uint64_t sequence = recorder_.begin(what, peer);
  WorkPtr work;
  try {
    work = start();
  } catch (...) {
    recorder_.end(sequence);
    throw;
  }
  return std::make_shared<RecordedWork>(std::move(work), recorder_, sequence);
}

WorkPtr RecordingCommunicator::isend(const at::Tensor& tensor, int dst, int tag) {
  const int peer = world_rank(dst);
  return record("send to rank " + std::to_string(peer) + " tag " + std::to_string(tag) + " (" +
                    bytes_of(tensor) + ")",
                peer, [&] { return inner_->isend(tensor, dst, tag); });
}

WorkPtr RecordingCommunicator::irecv(at::Tensor& tensor, int src, int tag) {
  const int peer = world_rank(src);
  return record("recv from rank " + std::to_string(peer) + " tag " + std::to_string(tag) + " (" +
                    bytes_of(tensor) + ")",
                peer, [&] { return inner_->irecv(tensor, src, tag); });
}

WorkPtr RecordingCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  return record("allreduce " + to_string(op) + " over " + group() + " (" + bytes_of(tensor) + ")",
                -1, [&] { return inner_->allreduce(tensor, op); });
}

WorkPtr RecordingCommunicator::broadcast(at::Tensor& tensor, int root) {
  const int peer = world_rank(root);
  return record("broadcast from rank " + std::to_string(peer) + " over " + group() + " (" +
                    bytes_of(tensor) + ")",
                inner_->rank() == root ? -1 : peer,
                [&] { return inner_->broadcast(tensor, root); });
}

WorkPtr RecordingCommunicator::allgather(const at::Tensor& input, at::Tensor& output) {
  return record("allgather over " + group() + " (" + bytes_of(input) + " each)", -1,
                [&] { return inner_->allgather(input, output); });
}

WorkPtr RecordingCommunicator::reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                              ReduceOp op) {
  return record(
      "reduce_scatter " + to_string(op) + " over " + group() + " (" + bytes_of(input) + ")", -1,
      [&] { return inner_->reduce_scatter(input, output, op); });
}

WorkPtr RecordingCommunicator::alltoall(const at::Tensor& input, at::Tensor& output,
                                        const std::vector<int64_t>& send_splits,
                                        const std::vector<int64_t>& recv_splits) {
  return record(
      "alltoall over " + group() + " (" + bytes_of(input) + " out, " + bytes_of(output) + " in)",
      -1, [&] { return inner_->alltoall(input, output, send_splits, recv_splits); });
}

WorkPtr RecordingCommunicator::barrier() {
  return record("barrier over " + group(), -1, [&] { return inner_->barrier(); });
}

std::shared_ptr<Communicator> RecordingCommunicator::split(int color, int key) {
  auto sub = inner_->split(color, key);
  if (!sub) return nullptr;
  at::Tensor mine = at::full({1}, world_rank(inner_->rank()), at::kInt);
  at::Tensor all = at::empty({sub->size(), 1}, at::kInt);
  sub->allgather(mine, all)->wait();
  std::vector<int> world_ranks(static_cast<size_t>(sub->size()));
  for (int r = 0; r < sub->size(); ++r) world_ranks[static_cast<size_t>(r)] = all[r][0].item<int>();
  return std::make_shared<RecordingCommunicator>(std::move(sub), recorder_, std::move(world_ranks));
}

CommunicatorPtr record_operations(CommunicatorPtr comm, core::FlightRecorder& recorder) {
  return std::make_shared<RecordingCommunicator>(std::move(comm), recorder);
}

}  // namespace strata::parallel
