#pragma once
// Pipeline placement on heterogeneous simulated accelerators (NASAIC style): where to cut a
// Sequential into contiguous stages, stage i on device i, from each layer's cost on each
// device and what the cuts copy; and the per-stage view of a CostReport. The pipeline
// itself is parallel's (PipelineParallel with one device per stage, in one process): a
// program joins the two with programs/simulated_time.h (strata-accel model --devices).
//
// The splitter is core's exact dynamic program (strata/core/layer_partition.h), the same
// one parallel's partitioners use, fed with whatever cost per layer and device the caller
// has (parameters, or simulated time from layer_microseconds).

#include <torch/nn/modules/container/sequential.h>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/accel/accel_spec.h"
#include "strata/accel/report.h"

namespace strata::accel {

// Runs the children of `model` in order, each under a LayerScope of its name, so that
// every op (parameterless ones such as ReLU included, and their backward) is attributed
// to the child that ran it.
at::Tensor forward_by_layer(torch::nn::Sequential& model, at::Tensor x);

// The contiguous split of layers into stages (costs[s][l]: layer l's cost if on stage s;
// every row the same length) whose largest stage cost is the smallest possible; every
// stage gets at least one layer. Returns the number of layers per stage. strata::Error if
// there are fewer layers than stages.
std::vector<int64_t> balance_stages(const std::vector<std::vector<double>>& costs);

// The same with what a cut costs: enter[s][l] is added to stage s when it starts at layer
// l > 0 (receiving the activation), leave[s][l] when it ends before layer l < n (receiving
// the gradient back, when training). Either may be empty (no cost).
std::vector<int64_t> balance_stages(const std::vector<std::vector<double>>& costs,
                                    const std::vector<std::vector<double>>& enter,
                                    const std::vector<std::vector<double>>& leave);

// Bytes of each child's input when `x` goes through the model (no gradients are made);
// bytes[l] is what a cut before child l copies between devices.
std::vector<int64_t> layer_input_bytes(torch::nn::Sequential& model, const at::Tensor& x);

// enter and leave for balance_stages in simulated microseconds of transfer_cost
// (simulator.h): the activation into stage s from s - 1; when training, its gradient back
// from s + 1 into stage s.
struct CutCosts {
  std::vector<std::vector<double>> enter, leave;
};
CutCosts cut_microseconds(const std::vector<int64_t>& input_bytes,
                          const std::vector<AcceleratorSpec>& specs, bool train);

// costs[s][l] = parameters of child l, the same for every one of `stages` stages.
std::vector<std::vector<double>> parameter_costs(torch::nn::Sequential& model, int stages);

// costs[i][l] = simulated microseconds of child l when the whole model runs `step` on a
// device with specs[i] (step gets the device to put its inputs on; it runs the model
// forward, and backward if it trains). Moves the model to each device in turn (it is on
// device specs.size() - 1 afterwards) and drops the gradients the steps left.
std::vector<std::vector<double>> layer_microseconds(torch::nn::Sequential& model,
                                                    const std::vector<AcceleratorSpec>& specs,
                                                    const std::function<void(c10::Device)>& step);

// A stage: its device index and the children [begin, end) of the model it runs.
struct PipelineStage {
  int device = 0;
  int64_t begin = 0, end = 0;       // children [begin, end) of the model
  std::vector<std::string> layers;  // their names
  int64_t parameters = 0;
};

struct StageCost {
  PipelineStage stage;
  std::string device_name;
  double clock_mhz = 0;
  CostTotal compute;    // the stage's ops on its device
  CostTotal transfers;  // the copies charged to its device (into it; out of it to the CPU)
  double compute_us = 0, transfer_us = 0;
  double microseconds() const { return compute_us + transfer_us; }
};

// The per-stage view of a pipeline's CostReport: each stage's compute and transfers.
//   latency_us    every stage's time added up ("stages in turn")
//   bottleneck_us the largest stage's time (a throughput bound that ignores the schedule)
// The pipeline's real figures in simulated time (its schedule replayed on each
// instruction's duration) come from the pipeline itself: programs/simulated_time.h.
struct PipelineReport {
  std::vector<StageCost> stages;
  double latency_us = 0;
  double bottleneck_us = 0;
  int bottleneck_stage = 0;
  double energy_pj = 0;
  nlohmann::json to_json() const;
  std::string table() const;
};

PipelineReport pipeline_report(const CostReport& report, const std::vector<PipelineStage>& stages);

}  // namespace strata::accel
