#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

std::string to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "unknown";
}

namespace {

// Waits for the reduction of a cast copy, then writes it back into the original once.
class CastBackWork final : public Work {
 public:
  CastBackWork(WorkPtr work, at::Tensor reduced, at::Tensor target)
      : work_(std::move(work)), reduced_(std::move(reduced)), target_(std::move(target)) {}
  void wait() override {
    work_->wait();
    if (reduced_.defined()) {
      target_.copy_(reduced_);
      reduced_ = at::Tensor();
    }
  }
  bool is_completed() override { return work_->is_completed(); }

 private:
  WorkPtr work_;
  at::Tensor reduced_, target_;
};

}  // namespace

WorkPtr allreduce_in_dtype(Communicator& comm, at::Tensor& tensor, ReduceOp op,
                           at::ScalarType dtype) {
  if (tensor.scalar_type() == dtype) return comm.allreduce(tensor, op);
  at::Tensor reduced = tensor.to(dtype);
  WorkPtr work = comm.allreduce(reduced, op);
  return std::make_shared<CastBackWork>(std::move(work), std::move(reduced), tensor);
}

WorkPtr Communicator::send(const at::Tensor& tensor, int dst, int tag) {
  auto work = isend(tensor, dst, tag);
  work->wait();
  return work;
}

WorkPtr Communicator::recv(at::Tensor& tensor, int src, int tag) {
  auto work = irecv(tensor, src, tag);
  work->wait();
  return work;
}

}  // namespace strata::parallel
