#include "strata/accel/report.h"

#include <fmt/format.h>

#include <sstream>

#include "strata/core/error.h"

namespace strata::accel {

nlohmann::json CostTotal::to_json() const {
  nlohmann::json j = cost.to_json();
  j["calls"] = calls;
  return j;
}

void CostReport::set_device(int index, const std::string& name, double clock_mhz) {
  STRATA_CHECK(clock_mhz > 0, "device ", index, " (", name, "): clock ", clock_mhz,
               " MHz, expected > 0");
  devices_[index] = {name, clock_mhz};
}

void CostReport::add(int device, const std::string& layer, const std::string& op,
                     const OpCost& cost) {
  entries_.push_back({device, layer, op, true, cost, {}});
}

void CostReport::add_uncharged(int device, const std::string& layer, const std::string& op,
                               const std::string& reason) {
  entries_.push_back({device, layer, op, false, OpCost{}, reason});
}

void CostReport::add(int device, const std::string& layer, const std::string& op,
                     const Charge& charge) {
  if (charge.charged)
    add(device, layer, op, charge.cost);
  else
    add_uncharged(device, layer, op, charge.reason);
}

namespace {
template <typename Key, typename KeyOf>
std::map<Key, CostTotal> group(const std::vector<ReportEntry>& entries, int device, KeyOf key_of) {
  std::map<Key, CostTotal> out;
  for (const auto& e : entries) {
    if (!e.charged || (device >= 0 && e.device != device)) continue;
    CostTotal& t = out[key_of(e)];
    ++t.calls;
    t.cost += e.cost;
  }
  return out;
}

std::string layer_name(const std::string& layer) { return layer.empty() ? "(no layer)" : layer; }
}  // namespace

std::map<std::string, CostTotal> CostReport::per_op(int device) const {
  return group<std::string>(entries_, device, [](const ReportEntry& e) { return e.op; });
}

std::map<std::string, CostTotal> CostReport::per_layer(int device) const {
  return group<std::string>(entries_, device,
                            [](const ReportEntry& e) { return layer_name(e.layer); });
}

std::map<int, CostTotal> CostReport::per_device() const {
  return group<int>(entries_, -1, [](const ReportEntry& e) { return e.device; });
}

CostTotal CostReport::total() const {
  CostTotal t;
  for (const auto& [d, dt] : per_device()) {
    t.calls += dt.calls;
    t.cost += dt.cost;
  }
  return t;
}

std::map<std::string, std::pair<int64_t, std::string>> CostReport::uncharged() const {
  std::map<std::string, std::pair<int64_t, std::string>> out;
  for (const auto& e : entries_) {
    if (e.charged) continue;
    auto& [count, reason] = out[e.op];
    if (count++ == 0) reason = e.reason;
  }
  return out;
}

nlohmann::json CostReport::to_json() const {
  auto totals = [](const std::map<std::string, CostTotal>& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, t] : m) j[k] = t.to_json();
    return j;
  };
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& [index, t] : per_device()) {
    nlohmann::json d = {{"index", index},
                        {"cost", t.to_json()},
                        {"layers", totals(per_layer(index))},
                        {"ops", totals(per_op(index))}};
    const auto it = devices_.find(index);
    if (it != devices_.end()) {
      d["name"] = it->second.name;
      d["clock_mhz"] = it->second.clock_mhz;
      d["microseconds"] = t.cost.microseconds(it->second.clock_mhz);
    }
    devices.push_back(d);
  }
  nlohmann::json missing = nlohmann::json::array();
  for (const auto& [op, cr] : uncharged())
    missing.push_back({{"op", op}, {"count", cr.first}, {"reason", cr.second}});
  return {{"total", total().to_json()}, {"devices", devices}, {"uncharged", missing}};
}

std::string CostReport::table() const {
  std::ostringstream out;
  const auto header = [&](const std::string& what) {
    out << fmt::format("{:<40} {:>7} {:>14} {:>12} {:>6} {:>14} {:>12}\n", what, "calls", "cycles",
                       "stalls", "util%", "DRAM words", "energy uJ");
  };
  const auto row = [&](const std::string& name, const CostTotal& t) {
    const OpCost& c = t.cost;
    out << fmt::format("{:<40} {:>7} {:>14} {:>12} {:>6.1f} {:>14} {:>12.3f}\n", name, t.calls,
                       c.cycles, c.stall_cycles, 100.0 * c.utilization(),
                       c.dram_reads + c.dram_writes, c.energy_pj() * 1e-6);
  };
  for (const auto& [index, t] : per_device()) {
    const auto it = devices_.find(index);
    std::string title = fmt::format("device {}", index);
    if (it != devices_.end())
      title += fmt::format(" ({}, {:.1f} us at {} MHz)", it->second.name,
                           t.cost.microseconds(it->second.clock_mhz), it->second.clock_mhz);
    out << title << "\n";
    header("  layer");
    for (const auto& [layer, lt] : per_layer(index)) row("  " + layer, lt);
    header("  op");
    for (const auto& [op, ot] : per_op(index)) row("  " + op, ot);
    row("  total", t);
  }
  const auto missing = uncharged();
  if (!missing.empty()) {
    out << "uncharged ops (no cost model):\n";
    for (const auto& [op, cr] : missing)
      out << fmt::format("  {} x{}: {}\n", op, cr.first, cr.second);
  }
  return out.str();
}

core::ChromeTrace CostReport::chrome_trace() const {
  core::ChromeTrace trace;
  std::map<int, double> now_us;
  for (const auto& e : entries_) {
    if (!e.charged || e.cost.cycles == 0) continue;
    const auto it = devices_.find(e.device);
    STRATA_CHECK(it != devices_.end(), "cost report: device ", e.device,
                 " has no clock (call set_device before writing a trace)");
    if (!now_us.count(e.device)) {
      trace.set_process_name(e.device, fmt::format("accel {} ({})", e.device, it->second.name));
      trace.set_thread_name(e.device, 0, "ops");
    }
    const double dur = e.cost.microseconds(it->second.clock_mhz);
    trace.add_complete(e.op, "accel", e.device, 0, now_us[e.device], dur,
                       {{"layer", e.layer},
                        {"cycles", e.cost.cycles},
                        {"stall_cycles", e.cost.stall_cycles},
                        {"utilization", e.cost.utilization()},
                        {"dram_words", e.cost.dram_reads + e.cost.dram_writes},
                        {"energy_pj", e.cost.energy_pj()}});
    now_us[e.device] += dur;
  }
  return trace;
}

void CostReport::write_chrome_trace(const std::string& path) const { chrome_trace().write(path); }

}  // namespace strata::accel
