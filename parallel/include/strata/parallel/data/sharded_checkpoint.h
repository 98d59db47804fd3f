#pragma once
// Writing one checkpoint from every rank of a communicator at once (core/checkpoint.h's
// sharded layout): each rank its own shard file, in parallel; rank 0 the manifest, last.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/checkpoint.h"
#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// One sharded checkpoint being written, in three parts so that the shard file can be
// written by a background thread (--checkpoint-async) while the collectives stay on the
// thread that trains:
//   ShardedCheckpointSave save(path, comm, step, extra, optimizer);  // collective
//   save.write(pieces);                                              // this rank only
//   save.commit();                                                   // collective
// The shards go to `<path>.tmp-<rank 0's pid>`; commit() has rank 0 write the manifest
// (`optimizer`: {"type", "lr"} or null) once every rank's file is written and fsynced, and
// rename the directory to `path`. When any rank failed, every rank throws the first
// failure's message from commit() and the temporary directory is removed: `path` is never
// half written.
class ShardedCheckpointSave {
 public:
  ShardedCheckpointSave(std::string path, CommunicatorPtr comm, int64_t step, nlohmann::json extra,
                        nlohmann::json optimizer);
  // This rank's slices of the whole model's tensors, as shard file comm.rank() of
  // comm.size(). Errors are kept for commit(), which every rank must reach.
  void write(const std::vector<core::CheckpointPiece>& pieces);
  void commit();

 private:
  std::string path_, tmp_;
  CommunicatorPtr comm_;
  int64_t step_;
  nlohmann::json extra_, optimizer_, entry_;
  std::string error_;
};

// ShardedCheckpointSave's three parts in a row.
void save_sharded_checkpoint(const std::string& path,
                             const std::vector<core::CheckpointPiece>& pieces,
                             const nlohmann::json& optimizer, CommunicatorPtr comm, int64_t step,
                             const nlohmann::json& extra = {});

}  // namespace strata::parallel
