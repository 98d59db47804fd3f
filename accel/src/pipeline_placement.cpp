#include "strata/accel/pipeline_placement.h"

#include <fmt/format.h>

#include <limits>
#include <sstream>

#include "strata/accel/device.h"
#include "strata/accel/op_recorder.h"
#include "strata/accel/simulator.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"
#include "strata/core/layer_partition.h"

namespace strata::accel {

namespace {
const char* const kTransferLayer = "(transfer)";

std::vector<std::string> child_names(torch::nn::Sequential& model) {
  std::vector<std::string> names;
  for (const auto& item : model->named_children()) names.push_back(item.key());
  return names;
}

int64_t parameters_of(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}
}  // namespace

at::Tensor forward_by_layer(torch::nn::Sequential& model, at::Tensor x) {
  const auto names = child_names(model);
  size_t i = 0;
  for (auto& child : *model) {
    LayerScope scope(names.at(i++));
    x = child.forward<at::Tensor>(x);
  }
  return x;
}

std::vector<int64_t> balance_stages(const std::vector<std::vector<double>>& costs) {
  return balance_stages(costs, {}, {});
}

std::vector<int64_t> balance_stages(const std::vector<std::vector<double>>& costs,
                                    const std::vector<std::vector<double>>& enter,
                                    const std::vector<std::vector<double>>& leave) {
  // Among equally good splits, the last stage starts as late as possible (as before the
  // program moved to core).
  return core::partition_layers(core::LayerCostTable{costs, enter, leave},
                                core::PartitionTies::LatestCut);
}

std::vector<int64_t> layer_input_bytes(torch::nn::Sequential& model, const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> bytes;
  at::Tensor h = x;
  for (auto& child : *model) {
    bytes.push_back(static_cast<int64_t>(h.numel() * h.element_size()));
    h = child.forward<at::Tensor>(h);
  }
  return bytes;
}

CutCosts cut_microseconds(const std::vector<int64_t>& input_bytes,
                          const std::vector<AcceleratorSpec>& specs, bool train) {
  const size_t stages = specs.size(), n = input_bytes.size();
  CutCosts c;
  c.enter.assign(stages, std::vector<double>(n, 0.0));
  if (train) c.leave.assign(stages, std::vector<double>(n, 0.0));
  for (size_t s = 0; s < stages; ++s)
    for (size_t l = 0; l < n; ++l) {
      if (s > 0)
        c.enter[s][l] = transfer_cost(input_bytes[l], &specs[s - 1], &specs[s])
                            .microseconds(specs[s].clock_mhz);
      if (train && s + 1 < stages)
        c.leave[s][l] = transfer_cost(input_bytes[l], &specs[s + 1], &specs[s])
                            .microseconds(specs[s].clock_mhz);
    }
  return c;
}

std::vector<std::vector<double>> parameter_costs(torch::nn::Sequential& model, int stages) {
  std::vector<double> row;
  for (const auto& child : model->children())
    row.push_back(static_cast<double>(parameters_of(*child)));
  return std::vector<std::vector<double>>(static_cast<size_t>(stages), row);
}

std::vector<std::vector<double>> layer_microseconds(torch::nn::Sequential& model,
                                                    const std::vector<AcceleratorSpec>& specs,
                                                    const std::function<void(c10::Device)>& step) {
  const auto names = child_names(model);
  std::vector<std::vector<double>> costs;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto sim = std::make_shared<Simulator>(specs[i]);
    const c10::Device dev = device(static_cast<int>(i));
    to_device(model, dev);
    {
      RecorderScope scope(sim);
      step(dev);
    }
    const CostReport report = sim->report();
    std::map<std::string, double> us;
    for (const auto& e : report.entries()) {
      if (!e.charged) continue;
      us[e.layer.substr(0, e.layer.find('.'))] += e.cost.microseconds(specs[i].clock_mhz);
    }
    std::vector<double> row;
    for (const auto& name : names) row.push_back(us[name]);
    costs.push_back(row);
    for (auto& p : model->parameters())
      if (p.grad().defined()) p.mutable_grad().reset();
  }
  return costs;
}

PipelineReport pipeline_report(const CostReport& report, const std::vector<PipelineStage>& stages) {
  PipelineReport out;
  std::map<int, size_t> stage_of;
  for (size_t s = 0; s < stages.size(); ++s) {
    StageCost sc;
    sc.stage = stages[s];
    out.stages.push_back(sc);
    stage_of[stages[s].device] = s;
  }
  for (const auto& e : report.entries()) {
    const auto it = stage_of.find(e.device);
    if (!e.charged || it == stage_of.end()) continue;
    CostTotal& t = e.layer == kTransferLayer ? out.stages[it->second].transfers
                                             : out.stages[it->second].compute;
    ++t.calls;
    t.cost += e.cost;
  }
  const nlohmann::json devices = report.to_json()["devices"];
  for (auto& sc : out.stages) {
    for (const auto& d : devices)
      if (d["index"] == sc.stage.device && d.contains("clock_mhz")) {
        sc.device_name = d["name"];
        sc.clock_mhz = d["clock_mhz"];
      }
    if (sc.clock_mhz > 0) {
      sc.compute_us = sc.compute.cost.microseconds(sc.clock_mhz);
      sc.transfer_us = sc.transfers.cost.microseconds(sc.clock_mhz);
    }
    out.latency_us += sc.microseconds();
    out.energy_pj += sc.compute.cost.energy_pj() + sc.transfers.cost.energy_pj();
  }
  for (size_t s = 0; s < out.stages.size(); ++s)
    if (out.stages[s].microseconds() > out.bottleneck_us) {
      out.bottleneck_us = out.stages[s].microseconds();
      out.bottleneck_stage = static_cast<int>(s);
    }
  return out;
}

nlohmann::json PipelineReport::to_json() const {
  nlohmann::json st = nlohmann::json::array();
  for (const auto& s : stages)
    st.push_back({{"device", s.stage.device},
                  {"name", s.device_name},
                  {"clock_mhz", s.clock_mhz},
                  {"layers", s.stage.layers},
                  {"parameters", s.stage.parameters},
                  {"compute", s.compute.to_json()},
                  {"transfers", s.transfers.to_json()},
                  {"compute_us", s.compute_us},
                  {"transfer_us", s.transfer_us},
                  {"microseconds", s.microseconds()}});
  return {{"stages", st},
          {"latency_us", latency_us},
          {"bottleneck_us", bottleneck_us},
          {"bottleneck_stage", bottleneck_stage},
          {"energy_pj", energy_pj}};
}

std::string PipelineReport::table() const {
  std::ostringstream out;
  out << fmt::format("{:<5} {:<24} {:<14} {:>12} {:>14} {:>6} {:>12} {:>12} {:>12}\n", "stage",
                     "device", "layers", "parameters", "cycles", "util%", "energy uJ",
                     "transfer us", "stage us");
  for (size_t i = 0; i < stages.size(); ++i) {
    const auto& s = stages[i];
    const std::string layers =
        s.stage.layers.empty() ? "" : s.stage.layers.front() + ".." + s.stage.layers.back();
    out << fmt::format("{:<5} {:<24} {:<14} {:>12} {:>14} {:>6.1f} {:>12.3f} {:>12.3f} {:>12.3f}\n",
                       i, fmt::format("{} ({})", s.stage.device, s.device_name), layers,
                       s.stage.parameters, s.compute.cost.cycles + s.transfers.cost.cycles,
                       100.0 * s.compute.cost.utilization(),
                       (s.compute.cost.energy_pj() + s.transfers.cost.energy_pj()) * 1e-6,
                       s.transfer_us, s.microseconds());
  }
  out << fmt::format("latency (one batch, stages in turn): {:.3f} us\n", latency_us);
  out << fmt::format("throughput bound (micro-batches streaming): one per {:.3f} us, stage {}\n",
                     bottleneck_us, bottleneck_stage);
  out << fmt::format("energy: {:.3f} uJ\n", energy_pj * 1e-6);
  return out.str();
}

}  // namespace strata::accel
