#include "strata/core/layer_partition.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "strata/core/error.h"

namespace strata::core {
namespace {
constexpr double kInfinity = std::numeric_limits<double>::infinity();
}  // namespace

std::vector<int64_t> min_max_stage_begins(int64_t n, int64_t k, const StageCostFunction& cost,
                                          PartitionTies ties) {
  STRATA_CHECK(k >= 1, "pipeline stages: got ", k, ", expected at least 1");
  STRATA_CHECK(k <= n, "cannot split ", n, " layers into ", k,
               " stages: every stage needs at least one layer");
  // best[s][j]: the smallest largest cost of layers [0, j) on stages 0..s; start[s][j]:
  // where stage s begins in it. A strict comparison keeps the first start scanned among
  // ties, so scanning upward keeps the earliest and downward the latest.
  std::vector<std::vector<double>> best(k, std::vector<double>(n + 1, kInfinity));
  std::vector<std::vector<int64_t>> start(k, std::vector<int64_t>(n + 1, 0));
  for (int64_t j = 1; j <= n - (k - 1); ++j) best[0][j] = cost(0, 0, j);
  for (int64_t s = 1; s < k; ++s) {
    // Stage s ends at j and leaves at least one layer for each stage after it.
    for (int64_t j = s + 1; j <= n - (k - 1 - s); ++j) {
      const auto consider = [&](int64_t i) {
        if (best[s - 1][i] == kInfinity) return;
        const double c = std::max(best[s - 1][i], cost(s, i, j));
        if (c < best[s][j]) {
          best[s][j] = c;
          start[s][j] = i;
        }
      };
      if (ties == PartitionTies::EarliestCut)
        for (int64_t i = s; i < j; ++i) consider(i);
      else
        for (int64_t i = j - 1; i >= s; --i) consider(i);
    }
  }
  if (best[k - 1][n] == kInfinity) return {};
  std::vector<int64_t> begins(k, 0);
  for (int64_t s = k - 1, j = n; s > 0; --s) {
    begins[s] = start[s][j];
    j = begins[s];
  }
  return begins;
}

void LayerCostTable::check() const {
  STRATA_CHECK(!layer.empty(), "layer cost table: got no stages, expected at least 1");
  const size_t n = layer[0].size();
  const auto check_rows = [&](const std::vector<std::vector<double>>& rows, const char* what,
                              bool may_be_empty) {
    if (may_be_empty && rows.empty()) return;
    STRATA_CHECK(rows.size() == layer.size(), "layer cost table ", what, ": got rows for ",
                 rows.size(), " stages, expected ", layer.size());
    for (size_t s = 0; s < rows.size(); ++s) {
      STRATA_CHECK(rows[s].size() == n, "layer cost table ", what, "[", s, "]: got ",
                   rows[s].size(), " layers, expected ", n);
      for (size_t l = 0; l < n; ++l)
        STRATA_CHECK(std::isfinite(rows[s][l]) && rows[s][l] >= 0, "layer cost table ", what, "[",
                     s, "][", l, "]: got ", rows[s][l], ", expected a finite value >= 0");
    }
  };
  check_rows(layer, "layer", false);
  check_rows(enter, "enter", true);
  check_rows(leave, "leave", true);
  STRATA_CHECK(n >= layer.size(), "cannot split ", n, " layers into ", layer.size(),
               " stages: every stage needs at least one layer");
}

double LayerCostTable::stage_cost(int64_t s, int64_t begin, int64_t end) const {
  const auto& row = layer.at(s);
  double c = 0;
  for (int64_t l = begin; l < end; ++l) c += row[l];
  if (!enter.empty() && begin > 0) c += enter[s][begin];
  if (!leave.empty() && end < layers()) c += leave[s][end];
  return c;
}

LayerCostTable LayerCostTable::uniform(const std::vector<double>& layer_costs, int64_t stages) {
  LayerCostTable table;
  table.layer.assign(static_cast<size_t>(std::max<int64_t>(stages, 0)), layer_costs);
  return table;
}

std::vector<int64_t> partition_layers(const LayerCostTable& table, PartitionTies ties) {
  table.check();
  const int64_t n = table.layers(), k = table.stages();
  // Prefix sums per row make a stage's cost O(1), so the program is O(K n^2).
  std::vector<std::vector<double>> prefix(k, std::vector<double>(n + 1, 0));
  for (int64_t s = 0; s < k; ++s)
    for (int64_t l = 0; l < n; ++l) prefix[s][l + 1] = prefix[s][l] + table.layer[s][l];
  const StageCostFunction cost = [&](int64_t s, int64_t b, int64_t e) {
    // Clamped: prefix differences of non-negative costs can round below zero.
    double c = std::max(0.0, prefix[s][e] - prefix[s][b]);
    if (!table.enter.empty() && b > 0) c += table.enter[s][b];
    if (!table.leave.empty() && e < n) c += table.leave[s][e];
    return c;
  };
  const std::vector<int64_t> begins = min_max_stage_begins(n, k, cost, ties);
  std::vector<int64_t> balance(k);
  for (int64_t s = 0; s < k; ++s) balance[s] = (s + 1 < k ? begins[s + 1] : n) - begins[s];
  return balance;
}

std::vector<double> stage_costs(const LayerCostTable& table, const std::vector<int64_t>& balance) {
  table.check();
  STRATA_CHECK(static_cast<int64_t>(balance.size()) == table.stages(), "balance: got ",
               balance.size(), " stages, expected ", table.stages(), " (the table's rows)");
  std::vector<double> costs;
  int64_t begin = 0;
  for (size_t s = 0; s < balance.size(); ++s) {
    STRATA_CHECK(balance[s] >= 1, "balance[", s, "]: got ", balance[s],
                 " layers, expected at least 1");
    costs.push_back(table.stage_cost(static_cast<int64_t>(s), begin, begin + balance[s]));
    begin += balance[s];
  }
  STRATA_CHECK(begin == table.layers(), "balance: got ", begin, " layers in all, expected ",
               table.layers());
  return costs;
}

}  // namespace strata::core
