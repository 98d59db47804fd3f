// The one exact partitioner (layer_partition.h) against brute force: on small random layer x
// device tables, with and without cut costs, the dynamic program's largest stage is the
// smallest over every contiguous split.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <random>

#include "strata/core/error.h"
#include "strata/core/layer_partition.h"

using strata::Error;
using strata::core::LayerCostTable;
using strata::core::min_max_stage_begins;
using strata::core::partition_layers;
using strata::core::PartitionTies;
using strata::core::stage_costs;
using testing::HasSubstr;

namespace {

double largest(const std::vector<double>& costs) {
  return *std::max_element(costs.begin(), costs.end());
}

// The smallest largest stage over every split of the table, by enumeration.
double brute_force_best(const LayerCostTable& table) {
  const int64_t n = table.layers(), k = table.stages();
  double best = std::numeric_limits<double>::infinity();
  std::vector<int64_t> balance(k, 0);
  std::function<void(int64_t, int64_t)> place = [&](int64_t s, int64_t left) {
    if (s == k - 1) {
      balance[s] = left;
      best = std::min(best, largest(stage_costs(table, balance)));
      return;
    }
    for (int64_t c = 1; c <= left - (k - 1 - s); ++c) {
      balance[s] = c;
      place(s + 1, left - c);
    }
  };
  place(0, n);
  return best;
}

std::vector<std::vector<double>> random_rows(std::mt19937& rng, int64_t rows, int64_t n) {
  // Small integers: sums are exact, so the comparison with brute force is exact too.
  std::uniform_int_distribution<int> value(0, 9);
  std::vector<std::vector<double>> t(rows, std::vector<double>(n));
  for (auto& row : t)
    for (double& v : row) v = value(rng);
  return t;
}

TEST(LayerPartition, MatchesBruteForceOnRandomTables) {
  std::mt19937 rng(17);
  int cases = 0;
  for (int64_t k = 1; k <= 4; ++k) {
    for (int64_t n = k; n <= 8; ++n) {
      for (int trial = 0; trial < 20; ++trial) {
        LayerCostTable table;
        table.layer = random_rows(rng, k, n);
        if (trial % 2 == 1) {  // with what the cuts cost
          table.enter = random_rows(rng, k, n);
          table.leave = random_rows(rng, k, n);
        }
        const double want = brute_force_best(table);
        for (PartitionTies ties : {PartitionTies::EarliestCut, PartitionTies::LatestCut}) {
          const std::vector<int64_t> balance = partition_layers(table, ties);
          ASSERT_EQ(static_cast<int64_t>(balance.size()), k);
          EXPECT_EQ(largest(stage_costs(table, balance)), want)
              << "k=" << k << " n=" << n << " trial=" << trial;
        }
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, (8 + 7 + 6 + 5) * 20);  // n in [k, 8] for k = 1..4
}

TEST(LayerPartition, TiesPickTheEarliestOrLatestCut) {
  // {1, 1, 1, 1} on two stages: {2, 2} is the only best split.
  EXPECT_EQ(partition_layers(LayerCostTable::uniform({1, 1, 1, 1}, 2)),
            (std::vector<int64_t>{2, 2}));
  // With {4, 0, 0, 4} every split's largest stage is 4: the earliest cut gives {1, 3}, the
  // latest {3, 1}.
  const LayerCostTable flat = LayerCostTable::uniform({4, 0, 0, 4}, 2);
  EXPECT_EQ(partition_layers(flat, PartitionTies::EarliestCut), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(partition_layers(flat, PartitionTies::LatestCut), (std::vector<int64_t>{3, 1}));
}

TEST(LayerPartition, StageCostFunctionMayForbidStages) {
  // A stage may hold at most two layers: of 4 layers on 2 stages only {2, 2} is allowed.
  const auto cost = [](int64_t, int64_t b, int64_t e) {
    return e - b <= 2 ? static_cast<double>(e - b) : std::numeric_limits<double>::infinity();
  };
  EXPECT_EQ(min_max_stage_begins(4, 2, cost), (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(min_max_stage_begins(5, 2, cost).empty());
}

TEST(LayerPartition, RefusesBadTables) {
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message([] { partition_layers(LayerCostTable::uniform({1}, 2)); }),
              HasSubstr("cannot split 1 layers into 2 stages"));
  EXPECT_THAT(message([] {
                partition_layers(LayerCostTable{{{1, 2}, {1}}, {}, {}});
              }),
              HasSubstr("layer cost table layer[1]: got 1 layers, expected 2"));
  EXPECT_THAT(message([] {
                partition_layers(LayerCostTable{{{1, 2}}, {{0, 0}, {0, 0}}, {}});
              }),
              HasSubstr("enter: got rows for 2 stages, expected 1"));
  EXPECT_THAT(message([] {
                partition_layers(LayerCostTable::uniform({1, -1}, 1));
              }),
              HasSubstr("layer[0][1]: got -1, expected a finite value >= 0"));
  EXPECT_THAT(message([] {
                stage_costs(LayerCostTable::uniform({1, 1, 1}, 2), {1, 1});
              }),
              HasSubstr("balance: got 2 layers in all, expected 3"));
}

}  // namespace
