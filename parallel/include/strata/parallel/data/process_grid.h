#pragma once
// The process grid: how the world's ranks divide into the groups each kind of parallelism
// communicates in. Every parallel feature takes its group from the grid.
//
// Two dimensions today, pipeline (pp stages) and data parallelism (dp replicas of each
// stage), on pp * dp ranks. The layout is Megatron's, with the data-parallel index varying
// fastest:
//
//   rank = pp_index * dp + dp_index
//
// so a data-parallel group is the dp consecutive ranks of one stage (the ranks that hold
// the same stage and all-reduce its gradients), and a pipeline group is the pp ranks with
// the same dp_index, one per stage, ordered by stage ({dp_index, dp_index + dp, ...}).
// Consecutive ranks usually share a host, so the gradient all-reduces, the heaviest
// traffic, stay on the fastest links.
//
// Expert parallelism (mixture-of-experts layers, ep ranks share out the experts) divides
// each data-parallel group further: ep must divide dp, and with ep_index = dp_index % ep
//
//   expert-parallel group       the ep consecutive data-parallel ranks with the same
//                               dp_index / ep; they exchange tokens, rank = ep_index
//   expert-data-parallel group  the dp / ep ranks with the same ep_index: they hold the
//                               same experts and sum those experts' gradients
//
// Every rank still sees its own data shard, so non-expert parameters are averaged over
// the whole data-parallel group as without experts.

#include <torch/arg.h>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

struct ProcessGridOptions {
  // Pipeline stages. Must be at least 1; 1 means no pipeline.
  TORCH_ARG(int, pipeline_parallel) = 1;
  // Ranks per data-parallel group (replicas of each stage); -1: world size / pipeline_parallel.
  // pipeline_parallel * data_parallel must equal the world size.
  TORCH_ARG(int, data_parallel) = -1;
  // Ranks that share out the experts of each mixture-of-experts layer; must divide
  // data_parallel. 1: every rank holds every expert.
  TORCH_ARG(int, expert_parallel) = 1;
};

class ProcessGrid {
 public:
  // Collective over `world`: every rank builds its grid with the same options. Raises
  // strata::Error (on every rank, before any communication) for a layout that cannot be.
  explicit ProcessGrid(CommunicatorPtr world, ProcessGridOptions options = {});

  CommunicatorPtr world() const { return world_; }
  // This rank's pipeline group: one rank per stage, with the same data-parallel index; its
  // rank() is this rank's stage. Stage s talks to stage s + 1 as rank s + 1 of this group.
  CommunicatorPtr pipeline() const { return pipeline_; }
  // This rank's data-parallel group: the ranks that hold the same stage (the same model
  // part) and average their gradients.
  CommunicatorPtr data_parallel() const { return data_parallel_; }
  // This rank's expert-parallel group (see the top): the ranks among which each
  // mixture-of-experts layer's experts are spread.
  CommunicatorPtr expert_parallel() const { return expert_parallel_; }
  // The ranks holding the same experts as this one (data_parallel_size / ep of them).
  CommunicatorPtr expert_data_parallel() const { return expert_data_parallel_; }

  // This rank's pipeline stage, 0 .. pipeline_size() - 1.
  int pipeline_rank() const { return pipeline_->rank(); }
  // This rank's index in its data-parallel group, 0 .. data_parallel_size() - 1.
  int data_parallel_rank() const { return data_parallel_->rank(); }
  int pipeline_size() const { return options_.pipeline_parallel(); }
  int data_parallel_size() const { return options_.data_parallel(); }
  int expert_parallel_rank() const { return expert_parallel_->rank(); }
  int expert_parallel_size() const { return options_.expert_parallel(); }

  // This rank in the world.
  int rank() const { return world_->rank(); }
  int size() const { return world_->size(); }
  // The options with data_parallel = -1 resolved.
  const ProcessGridOptions& options() const { return options_; }

 private:
  CommunicatorPtr world_;
  ProcessGridOptions options_;
  CommunicatorPtr data_parallel_;
  CommunicatorPtr pipeline_;
  CommunicatorPtr expert_parallel_;
  CommunicatorPtr expert_data_parallel_;
};

}  // namespace strata::parallel
