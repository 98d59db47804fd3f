#pragma once
// What a run on simulated accelerators cost: one entry per op (device index, layer path,
// op name, OpCost or the reason it could not be charged), with per-op, per-layer and
// per-device totals as JSON for programs, a text table for people and a Chrome trace of
// the simulated timeline (one row per device, ops end to end, cycles at the device's clock).
//
//   strata::accel::CostReport report;
//   report.set_device(0, spec.name, spec.clock_mhz);
//   report.add(0, "features.0", "aten::convolution_overrideable", dispatcher.charge(op));
//   std::cout << report.table();
//   report.write_chrome_trace("accel_trace.json");

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/accel/cost_model.h"
#include "strata/accel/op_cost.h"
#include "strata/core/chrome_trace.h"

namespace strata::accel {

struct ReportEntry {
  int device = 0;
  std::string layer;  // module path ("features.0"); empty: outside any layer
  std::string op;
  bool charged = true;
  OpCost cost;
  std::string reason;  // uncharged: why
};

// A total over entries, with how many ops it sums.
struct CostTotal {
  int64_t calls = 0;
  OpCost cost;
  nlohmann::json to_json() const;
};

class CostReport {
 public:
  // Names a device and gives its clock (for the trace and for microseconds in the table).
  void set_device(int index, const std::string& name, double clock_mhz);
  void add(int device, const std::string& layer, const std::string& op, const OpCost& cost);
  void add_uncharged(int device, const std::string& layer, const std::string& op,
                     const std::string& reason);
  // Either of the above, as the dispatcher decided.
  void add(int device, const std::string& layer, const std::string& op, const Charge& charge);
  void clear() { entries_.clear(); }

  const std::vector<ReportEntry>& entries() const { return entries_; }
  // Charged ops only; device -1: every device.
  std::map<std::string, CostTotal> per_op(int device = -1) const;
  std::map<std::string, CostTotal> per_layer(int device = -1) const;
  std::map<int, CostTotal> per_device() const;
  CostTotal total() const;
  // Uncharged ops by name: how many times each was seen and the first reason given.
  std::map<std::string, std::pair<int64_t, std::string>> uncharged() const;

  // {"total", "devices": [{"index", "name", "clock_mhz", "microseconds", "cost",
  //  "layers", "ops"}], "uncharged": [{"op", "count", "reason"}]}
  nlohmann::json to_json() const;
  // Per device, per layer and per op: calls, cycles, stalls, utilization, DRAM words,
  // energy; then the uncharged ops.
  std::string table() const;
  // strata::Error if an entry's device has no clock (set_device).
  core::ChromeTrace chrome_trace() const;
  void write_chrome_trace(const std::string& path) const;

 private:
  struct Device {
    std::string name;
    double clock_mhz = 0;
  };
  std::vector<ReportEntry> entries_;
  std::map<int, Device> devices_;
};

}  // namespace strata::accel
