#include "strata/accel/codesign.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "strata/accel/accelerator_template.h"
#include "strata/accel/area_model.h"
#include "strata/accel/aten_ops.h"
#include "strata/core/error.h"

namespace strata::accel {

// ---- networks ----

CodesignNetwork parse_codesign_network(const std::string& text) {
  CodesignNetwork n{text, {}};
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find('-', begin), text.size());
    const std::string part = text.substr(begin, end - begin);
    const bool digits =
        !part.empty() && part.size() <= 4 &&
        std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(c); });
    STRATA_CHECK(digits && std::stoll(part) > 0, "--networks '", text,
                 "': expected C1 or C1-C2 (positive conv channels of 1 or 2 blocks), e.g. 16-32");
    n.widths.push_back(std::stoll(part));
    begin = end + 1;
  }
  STRATA_CHECK(n.widths.size() <= 2, "--networks '", text, "': got ", n.widths.size(),
               " conv blocks, expected 1 or 2 (C1 or C1-C2)");
  return n;
}

std::vector<CodesignLayer> codesign_layers(const CodesignNetwork& n, int64_t batch,
                                           int64_t word_bytes) {
  std::vector<CodesignLayer> layers;
  int64_t in = 1, side = 28, index = 0;
  AtenConvArgs pad2;
  pad2.padding = {2};
  for (int64_t w : n.widths) {
    const std::vector<int64_t> out{batch, w, side, side};
    layers.push_back(
        {std::to_string(index++) + " conv",
         describe_aten_op("aten::convolution_overrideable",
                          {{batch, in, side, side}, {w, in, 5, 5}, {w}}, {out}, word_bytes, pad2)});
    layers.push_back({std::to_string(index++) + " relu",
                      describe_aten_op("aten::relu", {out}, {out}, word_bytes)});
    layers.push_back({std::to_string(index++) + " maxpool",
                      describe_aten_op("aten::max_pool2d", {out}, {{batch, w, side / 2, side / 2}},
                                       word_bytes)});
    in = w;
    side /= 2;
  }
  ++index;  // Flatten is a view: it moves no data
  const int64_t features = in * side * side;
  layers.push_back({std::to_string(index) + " linear",
                    describe_aten_op("aten::addmm", {{10}, {batch, features}, {features, 10}},
                                     {{batch, 10}}, word_bytes)});
  return layers;
}

// ---- hardware ----

AcceleratorSpec resized_preset(const std::string& preset, int64_t rows, int64_t cols,
                               double sram_kib) {
  AcceleratorSpec s = AcceleratorSpec::preset(preset);
  const double total = s.ifmap_sram_kib + s.filter_sram_kib + s.ofmap_sram_kib;
  s.rows = rows;
  s.cols = cols;
  s.ifmap_sram_kib *= sram_kib / total;
  s.filter_sram_kib *= sram_kib / total;
  s.ofmap_sram_kib *= sram_kib / total;
  s.name = fmt::format("{} {}x{}", preset, rows, cols);
  s.validate(s.name);
  return s;
}

std::vector<HardwareDesign> hardware_space(const HardwareSpaceOptions& o) {
  for (const auto& t : o.templates()) {
    const AcceleratorSpec s = AcceleratorSpec::preset(t);  // errors list the presets
    // Resizing needs a PE array; the attention array's strength (fused attention) is no
    // use to a CNN, so it stays out as it always has.
    STRATA_CHECK(s.kind == Template::Systolic || s.kind == Template::RowStationary, "--templates ",
                 t, ": template ", to_string(s.kind),
                 " cannot run a CNN here; expected a systolic or row_stationary preset "
                 "(nvdla, shidiannao, eyeriss, tpu-like, generic-32)");
  }
  for (int64_t n : o.arrays())
    STRATA_CHECK(n >= 4, "--arrays ", n, ": expected a side of at least 4 PEs");
  for (double kib : o.sram_kib())
    STRATA_CHECK(kib > 0, "--sram-kib ", kib, ": expected a positive size in KiB");
  std::vector<HardwareDesign> space;
  auto add = [&](std::string name, const std::vector<AcceleratorSpec>& specs) {
    HardwareDesign h{std::move(name), {}, 0};
    for (const auto& s : specs) {
      h.subs.push_back(std::make_shared<SubAccelerator>(s));
      h.area_mm2 += accelerator_area(s).total_mm2();
    }
    space.push_back(std::move(h));
  };
  const auto& templates = o.templates();
  for (double kib : o.sram_kib()) {
    for (int64_t n : o.arrays())
      for (const auto& t : templates)
        add(fmt::format("{} {}x{} {}K", t, n, n, kib), {resized_preset(t, n, n, kib)});
    if (o.homogeneous_only()) continue;
    for (int64_t n : o.arrays())
      for (size_t a = 0; a < templates.size(); ++a)
        for (size_t b = a + 1; b < templates.size(); ++b)
          for (double f : o.splits()) {
            // The n x n PEs split by columns, the SRAM in the same proportion.
            const int64_t cols_a = std::max<int64_t>(1, std::llround(f * double(n)));
            if (cols_a >= n) continue;
            const double share = double(cols_a) / double(n);
            add(fmt::format("{} {}x{} + {} {}x{} {}K", templates[a], n, cols_a, templates[b], n,
                            n - cols_a, kib),
                {resized_preset(templates[a], n, cols_a, kib * share),
                 resized_preset(templates[b], n, n - cols_a, kib * (1 - share))});
          }
  }
  return space;
}

// ---- pricing ----

DesignCost price_design(const CodesignNetwork& n, const HardwareDesign& h, int64_t batch) {
  DesignCost cost;
  cost.area_mm2 = h.area_mm2;
  std::map<int64_t, std::vector<CodesignLayer>> layers_by_word;  // the datatypes may differ
  for (const auto& sub : h.subs)
    if (!layers_by_word.count(sub->spec.word_bytes))
      layers_by_word[sub->spec.word_bytes] = codesign_layers(n, batch, sub->spec.word_bytes);
  const size_t count = layers_by_word.begin()->second.size();
  for (size_t i = 0; i < count; ++i) {
    double best_ms = std::numeric_limits<double>::infinity(), best_mj = 0;
    size_t best = 0;
    for (size_t s = 0; s < h.subs.size(); ++s) {
      const auto& sub = *h.subs[s];
      const CodesignLayer& layer = layers_by_word[sub.spec.word_bytes][i];
      const Charge charge = sub.device.charge(layer.op);
      STRATA_CHECK(charge.charged, "layer ", layer.name, " of network ", n.name,
                   ": no cost model on ", sub.spec.name, ": ", charge.reason);
      const double ms = charge.cost.microseconds(sub.spec.clock_mhz) * 1e-3;
      const double mj = charge.cost.energy_pj() * 1e-9;
      if (ms < best_ms || (ms == best_ms && mj < best_mj)) best_ms = ms, best_mj = mj, best = s;
    }
    cost.latency_ms += best_ms;
    cost.energy_mj += best_mj;
    cost.assignment += static_cast<char>('A' + best);
  }
  return cost;
}

bool uses_every_sub(const DesignCost& p, const HardwareDesign& h) {
  for (size_t s = 0; s < h.subs.size(); ++s)
    if (p.assignment.find(static_cast<char>('A' + s)) == std::string::npos) return false;
  return true;
}

bool meets_limits(const DesignCost& p, const CodesignLimits& l) {
  return p.latency_ms <= l.latency_ms && p.energy_mj <= l.energy_mj && p.area_mm2 <= l.area_mm2;
}

double limit_ratio(const DesignCost& p, const CodesignLimits& l) {
  return std::max(
      {p.latency_ms / l.latency_ms, p.energy_mj / l.energy_mj, p.area_mm2 / l.area_mm2});
}

// ---- designs ----

bool dominates(const Design& a, const Design& b) {
  const bool no_worse = a.accuracy >= b.accuracy && a.cost.latency_ms <= b.cost.latency_ms &&
                        a.cost.energy_mj <= b.cost.energy_mj && a.cost.area_mm2 <= b.cost.area_mm2;
  const bool better = a.accuracy > b.accuracy || a.cost.latency_ms < b.cost.latency_ms ||
                      a.cost.energy_mj < b.cost.energy_mj || a.cost.area_mm2 < b.cost.area_mm2;
  return no_worse && better;
}

bool better_design(const Design& a, const Design& b) {
  if (a.accuracy != b.accuracy) return a.accuracy > b.accuracy;
  if (a.cost.energy_mj != b.cost.energy_mj) return a.cost.energy_mj < b.cost.energy_mj;
  return a.cost.latency_ms < b.cost.latency_ms;
}

std::vector<Design> pareto_front(const std::vector<Design>& designs) {
  std::vector<Design> front;
  for (const auto& a : designs)
    if (std::none_of(designs.begin(), designs.end(),
                     [&](const Design& b) { return dominates(b, a); }))
      front.push_back(a);
  std::sort(front.begin(), front.end(), better_design);
  return front;
}

// ---- the search ----

CodesignSearch::CodesignSearch(CodesignOptions options) : options_(std::move(options)) {
  const CodesignLimits limits = options_.limits();
  STRATA_CHECK(limits.latency_ms > 0 && limits.energy_mj > 0 && limits.area_mm2 > 0,
               "the search needs --latency-ms, --energy-mj and --area-mm2 (positive limits); got ",
               limits.latency_ms, ", ", limits.energy_mj, ", ", limits.area_mm2);
  STRATA_CHECK(options_.infer_batch() > 0, "--infer-batch ", options_.infer_batch(),
               ": expected a positive number of images");
  for (const auto& text : options_.networks()) networks_.push_back(parse_codesign_network(text));
  hardware_ = hardware_space(options_.hardware());

  // Price every pair and prune those over the limits.
  double min_latency = std::numeric_limits<double>::infinity(), min_energy = min_latency,
         min_area = min_latency;
  costs_.resize(networks_.size());
  for (size_t n = 0; n < networks_.size(); ++n)
    for (size_t h = 0; h < hardware_.size(); ++h) {
      const DesignCost p = price_design(networks_[n], hardware_[h], options_.infer_batch());
      costs_[n].push_back(p);
      min_latency = std::min(min_latency, p.latency_ms);
      min_energy = std::min(min_energy, p.energy_mj);
      min_area = std::min(min_area, p.area_mm2);
      if (meets_limits(p, limits) && uses_every_sub(p, hardware_[h]))
        feasible_.push_back({n, h, p, -1});
    }
  STRATA_CHECK(!feasible_.empty(), "no design meets the limits (latency <= ", limits.latency_ms,
               " ms, energy <= ", limits.energy_mj, " mJ, area <= ", limits.area_mm2,
               " mm^2) among ", pairs(), " pairs; the smallest seen: latency ",
               fmt::format("{:.4g}", min_latency), " ms, energy ",
               fmt::format("{:.4g}", min_energy), " mJ, area ", fmt::format("{:.4g}", min_area),
               " mm^2");
}

std::vector<size_t> CodesignSearch::surviving_networks() const {
  std::set<size_t> surviving;
  for (const auto& f : feasible_) surviving.insert(f.network);
  return {surviving.begin(), surviving.end()};
}

std::vector<size_t> CodesignSearch::networks_to_score() const {
  std::vector<size_t> order = surviving_networks();
  if (options_.nas_then_asic()) {
    const std::set<size_t> surviving(order.begin(), order.end());
    for (size_t n = 0; n < networks_.size(); ++n)
      if (!surviving.count(n)) order.push_back(n);
  }
  return order;
}

CodesignResult CodesignSearch::run(const AccuracyFunction& accuracy) const {
  CodesignResult r;
  r.accuracy.assign(networks_.size(), -1);
  const std::vector<size_t> order = networks_to_score();
  const size_t surviving = surviving_networks().size();
  for (size_t i = 0; i < order.size(); ++i)
    r.accuracy[order[i]] = accuracy({networks_[order[i]], i + 1, order.size(), i >= surviving});
  r.feasible = feasible_;
  for (auto& f : r.feasible) f.accuracy = r.accuracy[f.network];
  r.front = pareto_front(r.feasible);
  r.best = *std::min_element(r.feasible.begin(), r.feasible.end(), better_design);

  if (options_.nas_then_asic()) {
    const CodesignLimits limits = options_.limits();
    size_t top = 0;
    for (size_t n = 1; n < networks_.size(); ++n)
      if (r.accuracy[n] > r.accuracy[top]) top = n;
    std::optional<Design> within, closest;
    for (size_t h = 0; h < hardware_.size(); ++h) {
      const DesignCost& p = costs_[top][h];
      if (!uses_every_sub(p, hardware_[h])) continue;
      if (meets_limits(p, limits) && (!within || p.energy_mj < within->cost.energy_mj))
        within = Design{top, h, p, r.accuracy[top]};
      if (!closest || limit_ratio(p, limits) < limit_ratio(closest->cost, limits))
        closest = Design{top, h, p, r.accuracy[top]};
    }
    NasThenAsic base;
    base.meets_limits = within.has_value();
    base.design = base.meets_limits ? *within : *closest;
    base.limit_ratio = limit_ratio(base.design.cost, limits);
    r.nas_then_asic = base;
  }
  return r;
}

}  // namespace strata::accel
