#include "strata/parallel/comm/communicator.h"

#include <utility>

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
  if (tensor.scalar_type() == dtype) return allreduce_anywhere(comm, tensor, op);
  at::Tensor reduced = tensor.to(dtype);
  WorkPtr work = allreduce_anywhere(comm, reduced, op);
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

namespace {

// A Work on a CPU copy of `target`: waiting copies the result back into `target`.
class CopyBackWork final : public Work {
 public:
  CopyBackWork(WorkPtr inner, at::Tensor host, at::Tensor target)
      : inner_(std::move(inner)), host_(std::move(host)), target_(std::move(target)) {}
  void wait() override {
    inner_->wait();
    copy_back();
  }
  bool is_completed() override {
    if (!inner_->is_completed()) return false;
    copy_back();
    return true;
  }

 private:
  void copy_back() {
    if (!target_.defined()) return;
    target_.copy_(host_);
    target_ = at::Tensor();
  }
  WorkPtr inner_;
  at::Tensor host_, target_;
};

template <typename Start>
WorkPtr through_host(Communicator& comm, at::Tensor& tensor, Start start) {
  if (comm.supports_device(tensor.device())) return start(tensor);
  at::Tensor host = tensor.cpu();
  return std::make_shared<CopyBackWork>(start(host), host, tensor);
}

}  // namespace

WorkPtr allreduce_anywhere(Communicator& comm, at::Tensor& tensor, ReduceOp op) {
  return through_host(comm, tensor, [&](at::Tensor& t) { return comm.allreduce(t, op); });
}

WorkPtr broadcast_anywhere(Communicator& comm, at::Tensor& tensor, int root) {
  return through_host(comm, tensor, [&](at::Tensor& t) { return comm.broadcast(t, root); });
}

}  // namespace strata::parallel
