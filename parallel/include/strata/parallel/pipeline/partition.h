#pragma once
// The pipeline partitioner: which contiguous run of layers each pipeline stage gets.
//
// Splitting by parameter count (what most pipeline systems do) leaves stages unbalanced in
// what actually limits a pipeline: the slowest stage's time, and the memory of the stage
// that holds the most micro-batches. So the partitioner works from a per-layer profile
// (parameters, measured forward+backward time, activation bytes) and splits by any of
// those, or by time under a per-stage memory limit. Every split is exact: a dynamic
// program over (stage, layer) finds a split whose largest stage cost is the smallest
// possible. See docs/pipeline-partitioning.md.

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>
#include <vector>

namespace strata::parallel {

// What one layer costs. profile_layers measures these; a user may also fill them by hand
// (for a model that is an ordered list of modules but not a Sequential, or from a cost
// model of another device).
struct LayerProfile {
  std::string name;  // the child's name in the Sequential ("0", "1", ... unless named)
  std::string type;  // "Linear", "ReLU", ...
  int64_t parameters = 0;
  int64_t parameter_bytes = 0;
  double time = 0;  // forward + backward of one micro-batch, seconds
  // Bytes one micro-batch in flight keeps alive for this layer until its backward: the
  // output, plus the input for layers that save it (see profile_layers).
  int64_t activation_bytes = 0;
};

// Runs each layer of `model` forward and backward on the activations `sample_micro_batch`
// produces, once to warm up and then `repeats` times, and records the median time.
// activation_bytes is an approximation from tensor sizes, not an allocator measurement:
// the output's bytes (0 when it shares the input's storage: Flatten, in-place ReLU), plus
// the input's bytes for layers with parameters (Linear, Conv, norms), which save their
// input to compute the weight gradient. The first layer's input is not given a gradient,
// as in a real pipeline's first stage. Parameter gradients are left as they were.
std::vector<LayerProfile> profile_layers(torch::nn::Sequential& model,
                                         const at::Tensor& sample_micro_batch, int repeats = 3);

// How much memory a stage needs:
//   parameter_bytes * (2 + optimizer_state_factor) + activation_bytes * in_flight[stage]
// (weights, their gradients, optimizer state; the activations of every micro-batch the
// stage holds between its forward and its backward).
struct MemoryModel {
  // Micro-batches stage s holds at once under the schedule; empty: 1 for every stage.
  // schedule_in_flight (schedule_registry.h) derives it from any registered schedule;
  // gpipe_in_flight and one_f_one_b_in_flight are the closed forms of two of them.
  TORCH_ARG(std::vector<int64_t>, in_flight);
  // Bytes of optimizer state per parameter byte: SGD 0, SGD with momentum 1, Adam 2.
  TORCH_ARG(double, optimizer_state_factor) = 1;
};

// GPipe runs every forward before any backward: each stage holds all M micro-batches.
std::vector<int64_t> gpipe_in_flight(int stages, int micro_batches);
// 1F1B starts backward as soon as it can: stage s holds min(K - s, M).
std::vector<int64_t> one_f_one_b_in_flight(int stages, int micro_batches);

// The memory formula above for layers [begin, end) placed on stage `stage`.
int64_t stage_memory_bytes(const std::vector<LayerProfile>& layers, int64_t begin, int64_t end,
                           int64_t stage, const MemoryModel& memory = MemoryModel());

struct StagePlan {
  int64_t begin = 0, end = 0;  // layers [begin, end)
  std::vector<std::string> layer_names;
  int64_t parameters = 0;
  double time = 0;           // seconds per micro-batch, forward + backward
  int64_t memory_bytes = 0;  // by the MemoryModel the partition was made with
};

struct PipelinePartition {
  std::vector<StagePlan> stages;
  int64_t memory_limit_bytes = 0;  // the limit partition_joint honoured; 0: none

  std::vector<int64_t> balance() const;  // layers per stage
  int64_t slowest_stage() const;         // index of the stage with the largest time
  // A table with one row per stage (layers, parameters, expected time and memory), then
  // the slowest stage and the largest memory.
  std::string describe() const;
};

// The split the user asked for: balance[s] layers on stage s.
PipelinePartition partition_explicit(const std::vector<LayerProfile>& layers,
                                     const std::vector<int64_t>& balance,
                                     const MemoryModel& memory = MemoryModel());

enum class BalanceBy { Parameters, Time, Memory };

// The contiguous split into `stages` stages whose largest stage cost (parameters, time,
// or stage_memory_bytes under `memory`) is the smallest possible. Among equally good
// splits, the last stage starts as early as possible, and the layers before it get their
// own best split by the same rule, so equal inputs always give the same split.
PipelinePartition partition_balanced(const std::vector<LayerProfile>& layers, int stages,
                                     BalanceBy by, const MemoryModel& memory = MemoryModel());

// For interleaved schedules, where rank r runs stages r, r + ranks, r + 2 ranks, ...: the
// step is bounded by the busiest rank's total, not by the largest stage, and a split that
// balances stages can leave one rank with most of the work (a 7-layer model in 4 stages on
// 2 ranks). This is the split whose busiest rank (by parameters or time) is the least busy,
// ties broken by the largest stage, found by trying every split when there are at most
// 200,000 of them; otherwise, and when ranks == stages, partition_balanced's split.
PipelinePartition partition_rank_balanced(const std::vector<LayerProfile>& layers, int stages,
                                          int ranks, BalanceBy by,
                                          const MemoryModel& memory = MemoryModel());

// The contiguous split whose slowest stage is as fast as possible among those where every
// stage needs at most limit_bytes under `memory`. Ties as in partition_balanced. If no
// split fits, a strata::Error names the smallest limit that would.
PipelinePartition partition_joint(const std::vector<LayerProfile>& layers, int stages,
                                  int64_t limit_bytes, const MemoryModel& memory = MemoryModel());

// One Sequential per stage holding the original modules (the same parameters, not
// copies) under their original names; chaining their forwards is the model's forward.
std::vector<torch::nn::Sequential> split_sequential(const torch::nn::Sequential& model,
                                                    const PipelinePartition& partition);

// "14.2 MB": bytes in decimal megabytes, one decimal, as describe() and errors print them.
std::string format_megabytes(int64_t bytes);

}  // namespace strata::parallel
