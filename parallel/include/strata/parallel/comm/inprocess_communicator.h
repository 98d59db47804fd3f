#pragma once
// In-process backend: N ranks as threads of one process, sharing memory. For tests and for
// single-process runs over several devices; any device's tensors work (ATen copies them).
//
// Each communicator has a worker thread that runs its rank's collectives one at a time, in
// the order they were called; the workers of a group meet for each call and read each
// other's tensors directly. isend is buffered (the tensor is copied into the receiver's
// mailbox at once); irecv completes when a message from (src, tag) arrives, messages of one
// (src, dst, tag) being received in the order they were sent. isend_tensor hands the tensor
// itself over, and irecv_tensor copies it onto the receiver's device: one copy, no header.
//
// Nothing waits forever: an operation that waits longer than the timeout for another rank
// raises strata::Error naming the ranks it waited for, and aborts the job (every
// communicator of the same create(), splits included) so that the others stop waiting too.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

namespace detail {
// Defined in inprocess_communicator.cpp.
struct InProcessGroup;       // shared by the ranks of a group
struct InProcessCollective;  // what one rank brings to a collective call
struct InProcessMessage;     // a point-to-point message in a mailbox
class InProcessWorker;       // the thread that runs one rank's collectives
}  // namespace detail

class InProcessCommunicator final : public Communicator {
 public:
  // c10d's default for its process groups.
  static constexpr std::chrono::milliseconds default_timeout = std::chrono::minutes(30);

  // One communicator per rank; give each to its own thread.
  static std::vector<std::shared_ptr<InProcessCommunicator>> create(
      int world_size, std::chrono::milliseconds timeout = default_timeout);

  // Runs the operations already started on this rank, then leaves the group: operations
  // of other ranks that still wait for this one raise strata::Error.
  ~InProcessCommunicator() override;
  InProcessCommunicator(const InProcessCommunicator&) = delete;
  InProcessCommunicator& operator=(const InProcessCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override;
  std::string backend() const override { return "inprocess"; }

  WorkPtr isend(const at::Tensor& tensor, int dst, int tag = 0) override;
  WorkPtr irecv(at::Tensor& tensor, int src, int tag = 0) override;
  // Any device's tensors, as they are.
  bool supports_device(const c10::Device& /*device*/) const override { return true; }
  // The tensor itself, without a copy or a header: the receiver copies it onto its device
  // (one device-to-device copy), and then the send completes.
  std::vector<WorkPtr> isend_tensor(const at::Tensor& tensor, int dst, int tag) override;
  // isend_tensors (tensor_message.h) of this backend: the tensors themselves, as above;
  // irecv_tensor receives them as a list.
  std::vector<WorkPtr> isend_tensors(const std::vector<at::Tensor>& tensors, int dst, int tag);
  TensorWorkPtr irecv_tensor(int src, int tag, const c10::Device& device = c10::kCPU) override;
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

  // Breaks every communicator of this job, on every rank: operations waiting now and
  // started later raise strata::Error with `reason`. The in-process MPI_Abort: for a rank
  // that fails outside communication, so that the others do not wait for it.
  void abort(const std::string& reason);

 private:
  using Collective = detail::InProcessCollective;

  InProcessCommunicator(std::shared_ptr<detail::InProcessGroup> group, int rank);
  // Starts a collective on the worker. `prepare` checks the arguments and says what this
  // rank brings; if it throws, the rank still joins the call, so the others raise too.
  WorkPtr submit(const char* op, const std::function<Collective()>& prepare);
  void run(uint64_t sequence, Collective& collective);
  void deliver(detail::InProcessMessage message, int dst, int tag);
  // irecv into `tensor`, or irecv_tensor onto `device` when `tensor` is undefined.
  std::shared_ptr<TensorWork> post_receive(const at::Tensor& tensor, int src, int tag,
                                           const c10::Device& device, const char* what);

  std::shared_ptr<detail::InProcessGroup> group_;
  int rank_;
  std::unique_ptr<detail::InProcessWorker> worker_;
};

}  // namespace strata::parallel
