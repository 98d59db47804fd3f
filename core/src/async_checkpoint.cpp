#include "strata/core/async_checkpoint.h"

#include <utility>

namespace strata::core {

namespace {

at::Tensor copy_of(const at::Tensor& t) { return t.detach().to(at::kCPU).contiguous().clone(); }

}  // namespace

CheckpointContents copy_checkpoint_contents(const CheckpointContents& contents) {
  CheckpointContents copy = contents;
  for (CheckpointTensor& t : copy.tensors) t.tensor = copy_of(t.tensor);
  return copy;
}

std::vector<CheckpointPiece> copy_checkpoint_pieces(const std::vector<CheckpointPiece>& pieces) {
  std::vector<CheckpointPiece> copy = pieces;
  for (CheckpointPiece& p : copy) p.data = copy_of(p.data);
  return copy;
}

AsyncCheckpointWriter::~AsyncCheckpointWriter() {
  if (thread_.joinable()) thread_.join();
}

void AsyncCheckpointWriter::submit(std::function<void()> write) {
  wait();
  thread_ = std::thread([this, write = std::move(write)] {
    try {
      write();
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

void AsyncCheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

}  // namespace strata::core
