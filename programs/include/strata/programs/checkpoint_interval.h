#pragma once
// How often to checkpoint, from what checkpoints and restarts cost and how often nodes
// fail: Young's rule (interval = sqrt(2 C M) for a checkpoint cost C and a mean time
// between failures M of the whole job) with Daly's higher-order correction, which stays
// right when C is not small against M. TrainingRun uses it for --checkpoint-every auto;
// bench/bench_checkpoint_interval.py checks it against a simulated job of many nodes.
#include <cstdint>

namespace strata::programs {

struct CheckpointCosts {
  double checkpoint_seconds = 0;  // writing one checkpoint (the training stalls that long)
  double restart_seconds = 0;     // from a failure to training again (relaunch and reload)
  double step_seconds = 0;        // one training step
  double mtbf_hours_per_node = 0;
  int64_t nodes = 1;
};

struct CheckpointInterval {
  double job_mtbf_seconds = 0;  // the node MTBF over the number of nodes
  double seconds = 0;           // the chosen interval of work between checkpoints
  int64_t steps = 1;            // the same in steps (at least 1)
  // The work a failure costs on average: half an interval redone, plus the restart.
  double expected_lost_seconds = 0;
};

// Daly's estimate of the optimum interval of work between checkpoints, for checkpoint
// cost `checkpoint_seconds` and mean time between failures `mtbf_seconds` (both > 0):
// sqrt(2 C M) (1 + sqrt(C / 2M) / 3 + C / 18M) - C while C < 2M, else M.
double daly_interval_seconds(double checkpoint_seconds, double mtbf_seconds);

// The interval for `costs` (every field > 0 but restart_seconds, which may be 0).
// strata::Error naming the field otherwise.
CheckpointInterval choose_checkpoint_interval(const CheckpointCosts& costs);

// The nodes a job of `world_size` ranks runs on: the world over the ranks per node the
// launcher gives (LOCAL_WORLD_SIZE from strata-run, OMPI_COMM_WORLD_LOCAL_SIZE from
// mpirun), rounded up; 1 without either.
int64_t job_nodes(int world_size);

}  // namespace strata::programs
