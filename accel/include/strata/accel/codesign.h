#pragma once
// NASAIC-style co-design search of small CNNs and simulated accelerators
// (docs/accel-codesign.md; examples/accel_codesign is the program over it).
//
//   auto options = strata::accel::CodesignOptions().latency_ms(0.02).energy_mj(0.1).area_mm2(2);
//   strata::accel::CodesignSearch search(options);    // prices every pair, prunes
//   auto result = search.run([](const strata::accel::ScoreRequest& r) {
//     return train_and_test(r.network);                // the caller's accuracy, 0..1
//   });
//   for (const auto& d : result.front) ...             // (accuracy, latency, energy, area)
//
// Every (network, hardware) pair is priced analytically from the layer shapes with the
// cost models (inference of infer_batch images, layers one after another); pairs over the
// latency, energy or area limits are pruned; the accuracy function scores each network
// that survives once (whatever hardware it pairs with). The result is the Pareto front
// over (accuracy, latency, energy, area), the best design and "NAS then ASIC" (the most
// accurate network first, then the best hardware for it). Accuracy comes from the caller:
// this library trains nothing and reads no data set.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "strata/accel/accel_spec.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/op_description.h"

namespace strata::accel {

// fmnist-cnn with 1 or 2 conv blocks of chosen widths on 1 x 28 x 28 images, 10 classes:
// each block Conv2d(5x5, pad 2), ReLU, MaxPool2d(2); then Flatten, Linear(.., 10).
// "16-32" is fmnist-cnn.
struct CodesignNetwork {
  std::string name;             // "16-32"
  std::vector<int64_t> widths;  // conv output channels, one per block
};

// "C1" or "C1-C2"; strata::Error naming the text otherwise.
CodesignNetwork parse_codesign_network(const std::string& text);

// One op of an inference, as the device would see it. The name is the module's index and
// kind ("0 conv").
struct CodesignLayer {
  std::string name;
  OpDescription op;
};

// The ops one inference of `batch` images runs, in words of `word_bytes` (the
// accelerator's datatype).
std::vector<CodesignLayer> codesign_layers(const CodesignNetwork& network, int64_t batch,
                                           int64_t word_bytes);

// One accelerator, or two sub-accelerators of different templates sharing a PE and SRAM
// budget (NASAIC's heterogeneous designs).
struct SubAccelerator {
  AcceleratorSpec spec;
  CostDispatcher device;
  explicit SubAccelerator(const AcceleratorSpec& s) : spec(s), device(s) {}
};

struct HardwareDesign {
  std::string name;  // "nvdla 16x16 64K", "nvdla 16x4 + eyeriss 16x12 256K"
  std::vector<std::shared_ptr<SubAccelerator>> subs;
  double area_mm2 = 0;
};

struct HardwareSpaceOptions {
  // Presets of PE-array templates that run CNNs (systolic, row_stationary).
  TORCH_ARG(std::vector<std::string>, templates) = {"nvdla", "shidiannao", "eyeriss"};
  // Array sides N (N x N PEs), at least 4.
  TORCH_ARG(std::vector<int64_t>, arrays) = {8, 16, 32, 64};
  // On-chip SRAM in KiB, split as the preset's buffers.
  TORCH_ARG(std::vector<double>, sram_kib) = {64, 256};
  // Heterogeneous designs: the first sub-accelerator's share of the columns (and SRAM).
  TORCH_ARG(std::vector<double>, splits) = {0.25, 0.5, 0.75};
  TORCH_ARG(bool, homogeneous_only) = false;
};

// A preset resized to rows x cols PEs and `sram_kib` of buffers in the preset's
// proportions; its clock, bandwidth, datatype and vector unit stay the preset's.
AcceleratorSpec resized_preset(const std::string& preset, int64_t rows, int64_t cols,
                               double sram_kib);

// Every design: for each SRAM size, each array side and template alone, then (unless
// homogeneous_only) each pair of templates at each split. strata::Error naming a bad
// template, side or size.
std::vector<HardwareDesign> hardware_space(const HardwareSpaceOptions& options);

struct DesignCost {
  double latency_ms = 0;
  double energy_mj = 0;
  double area_mm2 = 0;
  std::string assignment;  // per layer, the sub-accelerator that runs it ("A", "B")
};

// Each layer runs on the sub-accelerator where it is fastest (ties: less energy). Every op
// reads its inputs from DRAM and writes its outputs there (the cost models' convention),
// so moving from one sub-accelerator to the other costs nothing beyond that.
DesignCost price_design(const CodesignNetwork& network, const HardwareDesign& hardware,
                        int64_t batch);

// A heterogeneous design whose second sub-accelerator would idle on a network is the first
// one alone with wasted area: no candidate for that network.
bool uses_every_sub(const DesignCost& cost, const HardwareDesign& hardware);

struct CodesignLimits {
  double latency_ms = 0;
  double energy_mj = 0;
  double area_mm2 = 0;
};

bool meets_limits(const DesignCost& cost, const CodesignLimits& limits);
// How far over the limits: the largest cost-to-limit ratio (<= 1: it meets them).
double limit_ratio(const DesignCost& cost, const CodesignLimits& limits);

// A (network, hardware) pair by index, its cost and its network's accuracy (-1: unscored).
struct Design {
  size_t network = 0;
  size_t hardware = 0;
  DesignCost cost;
  double accuracy = -1;
};

// a dominates b: no worse in accuracy, latency, energy and area, better in one.
bool dominates(const Design& a, const Design& b);
// Highest accuracy; ties by energy, then latency.
bool better_design(const Design& a, const Design& b);
// The designs no other one dominates, best first (better_design).
std::vector<Design> pareto_front(const std::vector<Design>& designs);

struct CodesignOptions {
  // The limits of one inference: all three must be positive.
  TORCH_ARG(double, latency_ms) = 0;
  TORCH_ARG(double, energy_mj) = 0;
  TORCH_ARG(double, area_mm2) = 0;
  // Networks: C1 or C1-C2 (CodesignNetwork).
  TORCH_ARG(std::vector<std::string>, networks) = {"8",     "16",    "32",    "8-16",
                                                   "8-32",  "8-64",  "16-16", "16-32",
                                                   "16-64", "32-16", "32-32", "32-64"};
  TORCH_ARG(HardwareSpaceOptions, hardware) = {};
  // Also score the networks the limits prune, for the NAS-then-ASIC baseline.
  TORCH_ARG(bool, nas_then_asic) = true;
  // Images per priced inference.
  TORCH_ARG(int64_t, infer_batch) = 1;

 public:
  CodesignLimits limits() const { return {latency_ms_, energy_mj_, area_mm2_}; }
};

// What the accuracy function is asked: a network, the count (1-based of `of`), and whether
// only the NAS-then-ASIC baseline needs it (no design of it meets the limits).
struct ScoreRequest {
  CodesignNetwork network;
  size_t number = 0;
  size_t of = 0;
  bool baseline_only = false;
};

// The network's accuracy in [0, 1], higher is better.
using AccuracyFunction = std::function<double(const ScoreRequest&)>;

// NAS then ASIC: the most accurate network regardless of hardware, then the best hardware
// for it: the least energy within the limits or, when no hardware meets them, the design
// closest to them (the least limit_ratio).
struct NasThenAsic {
  Design design;
  bool meets_limits = false;
  double limit_ratio = 0;
};

struct CodesignResult {
  std::vector<double> accuracy;  // per network; -1 for one not scored
  std::vector<Design> feasible;  // within the limits, scored
  std::vector<Design> front;     // pareto_front(feasible)
  Design best;                   // the best feasible design (better_design)
  std::optional<NasThenAsic> nas_then_asic;
};

class CodesignSearch {
 public:
  // Parses the networks, builds the hardware space, prices every pair and keeps those
  // within the limits that use every sub-accelerator. strata::Error for missing limits,
  // a bad network or hardware option, or when no design meets the limits (naming the
  // smallest latency, energy and area seen).
  explicit CodesignSearch(CodesignOptions options);

  const CodesignOptions& options() const { return options_; }
  const std::vector<CodesignNetwork>& networks() const { return networks_; }
  const std::vector<HardwareDesign>& hardware() const { return hardware_; }
  const DesignCost& cost(size_t network, size_t hardware) const {
    return costs_[network][hardware];
  }
  size_t pairs() const { return networks_.size() * hardware_.size(); }
  // The pairs within the limits (accuracy -1).
  const std::vector<Design>& feasible() const { return feasible_; }
  // Networks with a feasible design, ascending.
  std::vector<size_t> surviving_networks() const;
  // What run() scores, in order: the surviving networks, then (nas_then_asic) the rest.
  std::vector<size_t> networks_to_score() const;

  // Scores networks_to_score() with `accuracy`, once each, and picks the designs.
  CodesignResult run(const AccuracyFunction& accuracy) const;

 private:
  CodesignOptions options_;
  std::vector<CodesignNetwork> networks_;
  std::vector<HardwareDesign> hardware_;
  std::vector<std::vector<DesignCost>> costs_;  // [network][hardware]
  std::vector<Design> feasible_;
};

}  // namespace strata::accel
