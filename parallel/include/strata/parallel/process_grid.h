#pragma once
// The process grid: how the world's ranks divide into the groups each kind of parallelism
// communicates in. Every parallel feature takes its group from the grid.
//
// Today there is one dimension, data parallelism: groups of data_parallel consecutive ranks
// (the whole world by default). Pipeline and expert groups will be the other dimensions of
// the same grid: with dp = data_parallel, rank = outer_index * dp + dp_index, where the
// outer index will enumerate pipeline stages (and expert groups within them).

#include <torch/arg.h>

#include "strata/parallel/communicator.h"

namespace strata::parallel {

struct ProcessGridOptions {
  // Ranks per data-parallel group; -1: all ranks. Must divide the world size.
  TORCH_ARG(int, data_parallel) = -1;
};

class ProcessGrid {
 public:
  // Collective over `world`: every rank builds its grid with the same options.
  explicit ProcessGrid(CommunicatorPtr world, ProcessGridOptions options = {});

  CommunicatorPtr world() const { return world_; }
  // This rank's data-parallel group: the ranks that hold the same model part and average
  // their gradients.
  CommunicatorPtr data_parallel() const { return data_parallel_; }
  // This rank in the world.
  int rank() const { return world_->rank(); }
  int size() const { return world_->size(); }
  const ProcessGridOptions& options() const { return options_; }

 private:
  CommunicatorPtr world_;
  ProcessGridOptions options_;
  CommunicatorPtr data_parallel_;
};

}  // namespace strata::parallel
