#pragma once
// Gloo backend: CPU tensors between processes that were not started by mpirun (OpenMPI
// singletons cannot join each other), over c10d's ProcessGroupGloo from LibTorch, with the
// control store (control_store.h) for the rendezvous. tools/strata-run jobs use it through
// world_communicator() (control_plane.h). Built when Gloo's headers are found
// (Debian: libgloo-dev); gloo_available() says whether it was.
//
//   auto store = std::make_shared<strata::parallel::ControlStoreClient>("127.0.0.1:29500");
//   auto comm = strata::parallel::GlooCommunicator::create(store, rank, world_size);
//
// Every operation of the Communicator interface works on every dtype: data movement sends
// the bytes, and reductions on dtypes Gloo lacks (bool, int16, bfloat16, complex) run on a
// wider copy (uint8, int32, float, the real view). Avg is a sum divided afterwards, and
// reduce_scatter (which ProcessGroupGloo lacks) an allreduce of the input.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"
#include "strata/parallel/control/control_store.h"

namespace strata::parallel {

class GlooCommunicator final : public Communicator {
 public:
  // Joins the group of `size` ranks meeting under `prefix` in `store` (collective: every
  // rank calls it with the same prefix). Operations that do not finish within `timeout`
  // raise an error. Throws strata::Error when strata was built without Gloo.
  static std::shared_ptr<GlooCommunicator> create(
      std::shared_ptr<ControlStoreClient> store, int rank, int size,
      const std::string& prefix = "gloo",
      std::chrono::milliseconds timeout = std::chrono::minutes(30));
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "gloo"; }

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
  std::shared_ptr<Communicator> split(int color, int key) override;

  struct Impl;  // c10d types stay out of this header

 private:
  GlooCommunicator(std::unique_ptr<Impl> impl, int rank, int size);
  std::unique_ptr<Impl> impl_;
  int rank_, size_;
  int splits_ = 0;  // names each split's rendezvous
};

}  // namespace strata::parallel
