#pragma once
// A communicator that writes every operation into the flight recorder (see
// strata/core/flight_recorder.h): an entry begins when the operation is called and ends
// when its Work is waited for, is found completed, or is dropped. Wraps any backend, so
// that the watchdog's report can say "rank 1 waits for rank 0 in recv tag 7 (4096 bytes)"
// whatever moves the bytes. Peers are named by their rank in the world the wrapper was
// made for, also inside groups made by split().
//
//   auto comm = strata::parallel::record_operations(strata::parallel::MpiCommunicator::world());

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/flight_recorder.h"
#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

class RecordingCommunicator final : public Communicator {
 public:
  // `world_ranks[i]`: the world rank of this group's rank i (empty: `inner` is the world).
  RecordingCommunicator(CommunicatorPtr inner, core::FlightRecorder& recorder,
                        std::vector<int> world_ranks = {});

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }
  const CommunicatorPtr& inner() const { return inner_; }
  bool supports_device(const c10::Device& device) const override {
    return inner_->supports_device(device);
  }

  WorkPtr isend(const at::Tensor& tensor, int dst, int tag = 0) override;
  WorkPtr irecv(at::Tensor& tensor, int src, int tag = 0) override;
  WorkPtr allreduce(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr broadcast(at::Tensor& tensor, int root) override;
  WorkPtr allgather(const at::Tensor& input, at::Tensor& output) override;
  WorkPtr reduce_scatter(const at::Tensor& input, at::Tensor& output,
                         ReduceOp op = ReduceOp::Sum) override;
  WorkPtr alltoall(const at::Tensor& input, at::Tensor& output,
                   const std::vector<int64_t>& send_splits = {},
                   const std::vector<int64_t>& recv_splits = {}) override;
  WorkPtr barrier() override;
  // Collective over this group: the inner split, then an allgather of the members' world
  // ranks, so that the new group's entries name world ranks too.
  std::shared_ptr<Communicator> split(int color, int key) override;

 private:
  int world_rank(int group_rank) const;
  std::string group() const;  // "world of 4" or "group of 2 (ranks 1 3)"
  WorkPtr record(const std::string& what, int peer, const std::function<WorkPtr()>& start);

  CommunicatorPtr inner_;
  core::FlightRecorder& recorder_;
  std::vector<int> world_ranks_;
  bool is_world_ = false;
};

// `comm` wrapped so that its operations are recorded in the process's flight recorder.
CommunicatorPtr record_operations(CommunicatorPtr comm,
                                  core::FlightRecorder& recorder = core::FlightRecorder::global());

}  // namespace strata::parallel
