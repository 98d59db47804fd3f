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
