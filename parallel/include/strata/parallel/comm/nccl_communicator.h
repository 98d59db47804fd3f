#pragma once
// NCCL backend: CUDA tensors, one device per rank. Built into strata::parallel only when
// LibTorch has CUDA and NCCL is found (STRATA_WITH_NCCL); this header keeps NCCL and CUDA
// types out, so that it includes without them.
//
// Operations run on the communicator's own CUDA stream, ordered after the work already
// queued on the legacy default stream. Work::wait() makes the default stream wait for the
// operation and blocks until it has finished; is_completed() asks without blocking.
// NCCL has no tags: messages between two ranks arrive in the order they were sent, and a
// receiver's size is not checked against the sender's. Use a communicator from one thread
// at a time, in the same order of calls on every rank.

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "strata/parallel/comm/backend_registry.h"
#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

class ControlStoreClient;  // control_store.h

namespace detail {
struct NcclState;  // the ncclComm_t, stream and device; defined in nccl_communicator.cpp
}

// The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), which every rank of a new
// communicator needs: rank 0 makes it and sends it to the others by some other means.
struct NcclUniqueId {
  std::array<char, 128> bytes{};
};

class NcclCommunicator final : public Communicator {
 public:
  static NcclUniqueId make_unique_id();
  // Collective over the `size` ranks that pass the same id; sets nothing global (the
  // current device is restored).
  NcclCommunicator(int rank, int size, const NcclUniqueId& id, int device);
  // Rank 0 of `bootstrap` makes the id and broadcasts it over `bootstrap` (any backend with
  // CPU tensors: MPI, in-process); the new communicator has bootstrap's ranks.
  static std::shared_ptr<NcclCommunicator> create_from_mpi(Communicator& bootstrap, int device);
  // The same through the control plane's rendezvous store (a job started by strata-run):
  // rank 0 makes the id and sets it under `key`, the other ranks wait for it there.
  static std::shared_ptr<NcclCommunicator> create_from_store(
      ControlStoreClient& store, int rank, int size, int device,
      const std::string& key = "nccl/unique_id");
  // The job's world for the backend registry: through the store under strata-run, else
  // over MPI's world; the device is the rank on its host (LOCAL_RANK under strata-run,
  // mpirun's local rank) modulo the visible devices.
  static std::shared_ptr<NcclCommunicator> create_world(const BackendContext& context);

  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  bool supports_device(const c10::Device& device) const override { return device.is_cuda(); }
  int device() const;

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
  // ncclCommSplit (NCCL >= 2.18); strata::Error with an older NCCL.
  std::shared_ptr<Communicator> split(int color, int key) override;

 private:
  explicit NcclCommunicator(std::unique_ptr<detail::NcclState> state);

  std::unique_ptr<detail::NcclState> state_;
  int rank_ = 0;
  int size_ = 0;
};

}  // namespace strata::parallel
