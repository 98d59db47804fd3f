#pragma once
// Checkpoints written while training goes on (--checkpoint-async): the caller copies the
// state to memory at the step boundary and hands a job that writes the copy to this
// writer, which runs it on a background thread. At most one write is in flight: the next
// submit() waits for the previous one first.
//
//   core::AsyncCheckpointWriter writer;
//   core::CheckpointContents copy = core::copy_checkpoint_contents(
//       core::checkpoint_contents(model, &optimizer));
//   writer.submit([copy, path, step] { core::write_checkpoint(path, copy, step); });
//   ... train on ...
//   writer.wait();  // before exit: rethrows the write's error, if any

#include <exception>
#include <functional>
#include <thread>

#include "strata/core/checkpoint.h"

namespace strata::core {

// The same contents with every tensor copied (CPU, contiguous), so that training can go on
// changing the originals while the copy is written.
CheckpointContents copy_checkpoint_contents(const CheckpointContents& contents);
std::vector<CheckpointPiece> copy_checkpoint_pieces(const std::vector<CheckpointPiece>& pieces);

class AsyncCheckpointWriter {
 public:
  AsyncCheckpointWriter() = default;
  // Waits for a write in flight (its error is dropped: call wait() to see it).
  ~AsyncCheckpointWriter();
  AsyncCheckpointWriter(const AsyncCheckpointWriter&) = delete;
  AsyncCheckpointWriter& operator=(const AsyncCheckpointWriter&) = delete;

  // Waits for the write in flight (rethrowing its error), then runs `write` on a new
  // background thread.
  void submit(std::function<void()> write);
  // Waits for the write in flight, if any; rethrows the exception it ended with.
  void wait();
  bool in_flight() const { return thread_.joinable(); }

 private:
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace strata::core
