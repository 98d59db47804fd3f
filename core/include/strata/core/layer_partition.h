#pragma once
// The one exact partitioner of an ordered list of layers into contiguous pipeline stages.
//
// Every splitter in strata (parallel's measured-time, parameter and memory partitioners,
// the adaptive rebalancer of a running pipeline, accel's split over heterogeneous simulated
// devices) asks the same question: which contiguous runs of layers, one per stage, make the
// largest stage cost as small as possible? A dynamic program over (stage, last layer)
// answers it exactly in O(K n^2) evaluations of a stage's cost. The costs come from a
// layer x device table (each layer's cost on each stage's device) plus what a cut costs on
// either side (the activation received on entering, the gradient received on leaving), or,
// for costs that are not sums over layers (memory under a limit), from any function of
// (stage, first layer, end).

#include <cstdint>
#include <functional>
#include <vector>

namespace strata::core {

// cost(stage, begin, end): the cost of layers [begin, end) on stage `stage`; +infinity where
// that stage may not hold those layers.
using StageCostFunction = std::function<double(int64_t, int64_t, int64_t)>;

// Among splits whose largest stage cost is the same, which one wins: the one whose last
// stage starts earliest (and, by the same rule, the layers before it), or latest.
enum class PartitionTies { EarliestCut, LatestCut };

// The first layer of every stage of the split of `layers` layers into `stages` non-empty
// stages whose largest cost(stage, begin, end) is smallest; empty when every split has an
// infinite cost. Equal inputs always give the same split. strata::Error when stages < 1
// or stages > layers.
std::vector<int64_t> min_max_stage_begins(int64_t layers, int64_t stages,
                                          const StageCostFunction& cost,
                                          PartitionTies ties = PartitionTies::EarliestCut);

// Costs per layer and device: layer[s][l] is layer l's cost if it runs on stage s (every
// row the same length). enter[s][l] is added to stage s when it starts at layer l > 0
// (receiving the activation); leave[s][l] when it ends before layer l < n (receiving the
// gradient back). enter and leave may be empty (cuts cost nothing).
struct LayerCostTable {
  std::vector<std::vector<double>> layer, enter, leave;

  int64_t stages() const { return static_cast<int64_t>(layer.size()); }
  int64_t layers() const { return layer.empty() ? 0 : static_cast<int64_t>(layer[0].size()); }
  // strata::Error unless the rows agree in length, every cost is finite and >= 0, and
  // there are at least as many layers as stages.
  void check() const;
  // Layers [begin, end) on stage s, their cuts included.
  double stage_cost(int64_t s, int64_t begin, int64_t end) const;
  // One row for every stage: the same per-layer costs on every device (a homogeneous
  // pipeline, e.g. times measured on identical ranks).
  static LayerCostTable uniform(const std::vector<double>& layer_costs, int64_t stages);
};

// The min-max split of the table: the number of layers per stage.
std::vector<int64_t> partition_layers(const LayerCostTable& table,
                                      PartitionTies ties = PartitionTies::EarliestCut);

// Each stage's cost under `balance` (layers per stage; strata::Error unless it covers the
// table's layers with non-empty stages, one per row).
std::vector<double> stage_costs(const LayerCostTable& table, const std::vector<int64_t>& balance);

}  // namespace strata::core
