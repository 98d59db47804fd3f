#include "strata/parallel/data/sharded_checkpoint.h"

#include <unistd.h>

#include "strata/core/error.h"
#include "strata/core/flight_recorder.h"
#include "strata/parallel/comm/allgather_strings.h"

namespace strata::parallel {

namespace {

// Every rank learns whether any failed: "" from a rank that did not, its message from one
// that did. Throws the first failure's message on every rank.
void agree(Communicator& comm, const std::string& path, const std::string& error) {
  const std::vector<std::string> errors = allgather_strings(comm, error);
  for (size_t r = 0; r < errors.size(); ++r) {
    if (!errors[r].empty()) {
      STRATA_FAIL("checkpoint ", path, ": rank ", r, " of ", errors.size(), ": ", errors[r]);
    }
  }
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

ShardedCheckpointSave::ShardedCheckpointSave(std::string path, CommunicatorPtr comm, int64_t step,
                                             nlohmann::json extra, nlohmann::json optimizer)
    : path_(std::move(path)),
      comm_(std::move(comm)),
      step_(step),
      extra_(std::move(extra)),
      optimizer_(std::move(optimizer)) {
  // One temporary directory for every rank, named after rank 0's process as a one-process
  // checkpoint's is after its own.
  at::Tensor id = at::full({1}, static_cast<int64_t>(::getpid()), at::kLong);
  comm_->broadcast(id, 0)->wait();
  tmp_ = core::sharded_checkpoint_tmp(path_, std::to_string(id.item<int64_t>()));
  agree(*comm_, path_,
        comm_->rank() == 0 ? error_of([&] { core::begin_sharded_checkpoint(tmp_); }) : "");
}

void ShardedCheckpointSave::write(const std::vector<core::CheckpointPiece>& pieces) {
  core::FlightRecordScope record("checkpoint shard write " + path_ + " (step " +
                                 std::to_string(step_) + ")");
  error_ = error_of(
      [&] { entry_ = core::write_checkpoint_shard(tmp_, comm_->rank(), comm_->size(), pieces); });
}

void ShardedCheckpointSave::commit() {
  // Every rank sees every rank's outcome, so all stop at the same failure.
  const std::vector<std::string> outcomes =
      allgather_strings(*comm_, error_.empty() ? "ok " + entry_.dump() : "error " + error_);
  const bool root = comm_->rank() == 0;
  std::vector<nlohmann::json> shards;
  for (size_t r = 0; r < outcomes.size(); ++r) {
    if (outcomes[r].compare(0, 3, "ok ") == 0) {
      shards.push_back(nlohmann::json::parse(outcomes[r].substr(3)));
      continue;
    }
    if (root) core::abort_sharded_checkpoint(tmp_);
    STRATA_FAIL("checkpoint ", path_, ": rank ", r, " of ", outcomes.size(), ": ",
                outcomes[r].substr(6));
  }
  std::string commit_error;
  if (root) {
    commit_error = error_of(
        [&] { core::commit_sharded_checkpoint(path_, tmp_, shards, step_, extra_, optimizer_); });
    if (!commit_error.empty()) core::abort_sharded_checkpoint(tmp_);
  }
  agree(*comm_, path_, commit_error);
}

void save_sharded_checkpoint(const std::string& path,
                             const std::vector<core::CheckpointPiece>& pieces,
                             const nlohmann::json& optimizer, CommunicatorPtr comm, int64_t step,
                             const nlohmann::json& extra) {
  ShardedCheckpointSave save(path, std::move(comm), step, extra, optimizer);
  save.write(pieces);
  save.commit();
}

}  // namespace strata::parallel
