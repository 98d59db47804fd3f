#pragma once
// The one communicator interface every parallel feature uses, modelled on c10d's
// ProcessGroup/Work. Backends: MPI (CPU tensors, mpirun jobs), Gloo (CPU tensors,
// strata-run jobs), in-process (N ranks as threads sharing memory) and NCCL (CUDA tensors;
// built when CUDA and NCCL are found), each registered by name (backend_registry.h).
//
// Every operation takes at::Tensors of any dtype (contiguous or not, empty allowed) and
// returns a Work handle. Non-blocking operations (isend, irecv and every collective) may
// still be running when they return; wait() blocks until the result is in place.
// Blocking send/recv return a completed Work. Ranks must call collectives in the same
// order, as with MPI.

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace strata::parallel {

enum class ReduceOp { Sum, Avg, Max, Min };

std::string to_string(ReduceOp op);

// A handle to an operation that may still be in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the operation has finished and its outputs are written.
  virtual void wait() = 0;
  // True once wait() would return at once. Also drives progress of the operation.
  virtual bool is_completed() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// The receive of a tensor whose dtype, shape and device only the sender knows
// (Communicator::irecv_tensor): wait(), then tensor().
class TensorWork : public Work {
 public:
  // The received tensor, on the device the receive asked for. Only after wait().
  virtual at::Tensor tensor() = 0;
};
using TensorWorkPtr = std::shared_ptr<TensorWork>;

// A Work that is done when it is created (blocking operations, empty tensors).
class CompletedWork final : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};

class Communicator : public std::enable_shared_from_this<Communicator> {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi", "gloo", "inprocess" or "nccl".
  virtual std::string backend() const = 0;

  // Point to point. The receiver's tensor must have the sender's dtype and numel.
  virtual WorkPtr isend(const at::Tensor& tensor, int dst, int tag = 0) = 0;
  virtual WorkPtr irecv(at::Tensor& tensor, int src, int tag = 0) = 0;
  WorkPtr send(const at::Tensor& tensor, int dst, int tag = 0);
  WorkPtr recv(at::Tensor& tensor, int src, int tag = 0);

  // Whether the operations take tensors of `device` as they are. MPI and Gloo take CPU
  // tensors, NCCL CUDA ones, the in-process backend any; a caller with a tensor of another
  // device goes through a CPU copy (allreduce_anywhere, isend_tensor).
  virtual bool supports_device(const c10::Device& device) const { return device.is_cpu(); }

  // A tensor the receiver does not know in advance (dtype, shape), sent whole. By default
  // a small header and the data with the same tag (tensor_message.h), through a CPU copy
  // when the backend does not take the tensor's device; a backend whose ranks share memory
  // hands the tensor itself over, and the receiver copies it. Either way `tensor` must not
  // change before the returned Works complete.
  virtual std::vector<WorkPtr> isend_tensor(const at::Tensor& tensor, int dst, int tag);
  // Receives one tensor sent by isend_tensor, onto `device` (copied there from the
  // sender's device, or from the CPU). Non-blocking: the Work's is_completed() drives it.
  virtual TensorWorkPtr irecv_tensor(int src, int tag, const c10::Device& device = c10::kCPU);

  // Reduces `tensor` across ranks, in place. Avg needs a floating dtype.
  virtual WorkPtr allreduce(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // Copies root's `tensor` into every rank's `tensor`.
  virtual WorkPtr broadcast(at::Tensor& tensor, int root) = 0;
  // output has shape [size(), *input.sizes()]; row r receives rank r's input.
  virtual WorkPtr allgather(const at::Tensor& input, at::Tensor& output) = 0;
  // input has shape [size(), *output.sizes()]; rank r receives the reduction of row r.
  virtual WorkPtr reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                 ReduceOp op = ReduceOp::Sum) = 0;
  // Splits input along dim 0 into send_splits[r] rows for rank r, and fills output with
  // recv_splits[r] rows from rank r, in rank order. Empty split vectors mean equal splits.
  virtual WorkPtr alltoall(const at::Tensor& input, at::Tensor& output,
                           const std::vector<int64_t>& send_splits = {},
                           const std::vector<int64_t>& recv_splits = {}) = 0;
  virtual WorkPtr barrier() = 0;

  // Ranks with the same color form a new communicator, ordered by key (ties by rank).
  // Every rank must call it. A negative color returns nullptr (the rank joins no group).
  virtual std::shared_ptr<Communicator> split(int color, int key) = 0;
};
using CommunicatorPtr = std::shared_ptr<Communicator>;

// comm.allreduce and comm.broadcast on a tensor of any device: through a CPU copy (and
// back when the Work is waited for) when the backend does not take the tensor's device, so
// that the gradients of a stage on a simulated accelerator reduce over MPI.
WorkPtr allreduce_anywhere(Communicator& comm, at::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
WorkPtr broadcast_anywhere(Communicator& comm, at::Tensor& tensor, int root);
// An all-reduce of `tensor` whose messages carry `dtype` elements: with another dtype
// than the tensor's (bf16 gradients of fp32 parameters: half the bytes), the tensor is
// cast, reduced in that dtype and cast back into `tensor` by the Work's wait(); with the
// same dtype it is allreduce_anywhere(comm, tensor, op). The reduction rounds to `dtype`'s
// precision at every addition, so the result equals the fp32 one only within it.
WorkPtr allreduce_in_dtype(Communicator& comm, at::Tensor& tensor, ReduceOp op,
                           at::ScalarType dtype);

}  // namespace strata::parallel
