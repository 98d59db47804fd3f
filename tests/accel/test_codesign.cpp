// The co-design search (accel/codesign.h) with a fake accuracy function, so that it runs in
// seconds: dominance and the Pareto front, the limits, the "NAS then ASIC" baseline, and
// errors naming the bad option.

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "error_message.h"
#include "strata/accel/area_model.h"
#include "strata/accel/codesign.h"

namespace strata::accel {
namespace {

using test_support::error_of;
using test_support::has;

Design design(double accuracy, double latency, double energy, double area) {
  Design d;
  d.accuracy = accuracy;
  d.cost.latency_ms = latency;
  d.cost.energy_mj = energy;
  d.cost.area_mm2 = area;
  return d;
}

// Wider networks score higher: 8 < 16 < 8-16 < 16-32 ...
double fake_accuracy(const CodesignNetwork& n) {
  double channels = 0;
  for (int64_t w : n.widths) channels += static_cast<double>(w);
  return 0.5 + channels / 1000 + 0.01 * static_cast<double>(n.widths.size());
}

CodesignOptions tiny(double latency_ms, double energy_mj, double area_mm2) {
  return CodesignOptions()
      .latency_ms(latency_ms)
      .energy_mj(energy_mj)
      .area_mm2(area_mm2)
      .networks({"8", "8-16"})
      .hardware(
          HardwareSpaceOptions().templates({"nvdla", "shidiannao"}).arrays({8, 16}).sram_kib({64}));
}

bool same_pair(const Design& a, const Design& b) {
  return a.network == b.network && a.hardware == b.hardware;
}

TEST(Codesign, DominanceAndParetoFront) {
  const Design a = design(0.9, 1, 1, 1);
  const Design worse = design(0.8, 2, 2, 2);      // worse in everything
  const Design faster = design(0.85, 0.5, 1, 1);  // less accurate but faster
  const Design twin = design(0.9, 1, 1, 1);
  EXPECT_TRUE(dominates(a, worse));
  EXPECT_FALSE(dominates(worse, a));
  EXPECT_FALSE(dominates(a, faster));
  EXPECT_FALSE(dominates(faster, a));
  EXPECT_FALSE(dominates(a, twin));  // equal: neither is better in anything
  // One objective better and the others equal is enough.
  EXPECT_TRUE(dominates(design(0.9, 1, 1, 0.5), a));
  EXPECT_TRUE(dominates(design(0.91, 1, 1, 1), a));

  std::vector<Design> all = {worse, a, faster, design(0.95, 3, 3, 3)};
  for (size_t i = 0; i < all.size(); ++i) all[i].network = i;
  const std::vector<Design> front = pareto_front(all);
  ASSERT_EQ(front.size(), 3u);
  EXPECT_EQ(front[0].network, 3u);  // the most accurate first
  EXPECT_EQ(front[1].network, 1u);
  EXPECT_EQ(front[2].network, 2u);
  // Ties in accuracy: less energy first, then less latency.
  EXPECT_TRUE(better_design(design(0.9, 2, 1, 9), design(0.9, 1, 2, 1)));
  EXPECT_TRUE(better_design(design(0.9, 1, 1, 9), design(0.9, 2, 1, 1)));
}

TEST(Codesign, LimitsAndSubAcceleratorUse) {
  DesignCost c;
  c.latency_ms = 2, c.energy_mj = 0.5, c.area_mm2 = 1;
  EXPECT_FALSE(meets_limits(c, {1, 1, 1}));
  EXPECT_TRUE(meets_limits(c, {2, 0.5, 1}));  // at the limit is within it
  EXPECT_DOUBLE_EQ(limit_ratio(c, {1, 1, 1}), 2);
  EXPECT_DOUBLE_EQ(limit_ratio(c, {4, 0.25, 2}), 2);

  const auto space = hardware_space(HardwareSpaceOptions()
                                        .templates({"nvdla", "eyeriss"})
                                        .arrays({8})
                                        .sram_kib({64})
                                        .splits({0.5}));
  ASSERT_EQ(space.size(), 3u);  // nvdla, eyeriss, and nvdla + eyeriss
  EXPECT_EQ(space[2].name, "nvdla 8x4 + eyeriss 8x4 64K");
  EXPECT_NEAR(space[2].area_mm2,
              accelerator_area(space[2].subs[0]->spec).total_mm2() +
                  accelerator_area(space[2].subs[1]->spec).total_mm2(),
              1e-12);
  c.assignment = "AAB";
  EXPECT_TRUE(uses_every_sub(c, space[2]));
  c.assignment = "AAA";
  EXPECT_FALSE(uses_every_sub(c, space[2]));
  EXPECT_TRUE(uses_every_sub(c, space[0]));
  // Each layer goes where it is fastest.
  const CodesignNetwork net = parse_codesign_network("16-32");
  const DesignCost p = price_design(net, space[2], 1);
  const auto layers = codesign_layers(net, 1, 1);
  ASSERT_EQ(p.assignment.size(), layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const size_t chosen = p.assignment[i] - 'A';
    const auto& sub = *space[2].subs[chosen];
    const auto& other = *space[2].subs[1 - chosen];
    const auto ms = [&](const SubAccelerator& s) {
      const int64_t word = s.spec.word_bytes;
      return s.device.charge(codesign_layers(net, 1, word)[i].op)
          .cost.microseconds(s.spec.clock_mhz);
    };
    EXPECT_LE(ms(sub), ms(other)) << layers[i].name;
  }
}

TEST(Codesign, TinySearchFindsTheFrontWithinTheLimits) {
  const CodesignSearch search(tiny(0.02, 0.1, 2));
  EXPECT_EQ(search.networks().size(), 2u);
  EXPECT_EQ(search.pairs(), 2 * search.hardware().size());
  ASSERT_FALSE(search.feasible().empty());
  std::vector<std::string> scored;
  const CodesignResult r = search.run([&](const ScoreRequest& q) {
    scored.push_back(q.network.name);
    EXPECT_EQ(q.of, search.networks_to_score().size());
    EXPECT_EQ(q.number, scored.size());
    return fake_accuracy(q.network);
  });
  // Every network once, in networks_to_score order.
  std::vector<std::string> expected;
  for (size_t n : search.networks_to_score()) expected.push_back(search.networks()[n].name);
  EXPECT_EQ(scored, expected);

  const CodesignLimits limits = search.options().limits();
  ASSERT_EQ(r.feasible.size(), search.feasible().size());
  for (const Design& d : r.feasible) {
    EXPECT_TRUE(meets_limits(d.cost, limits));
    EXPECT_TRUE(uses_every_sub(d.cost, search.hardware()[d.hardware]));
    EXPECT_DOUBLE_EQ(d.accuracy, fake_accuracy(search.networks()[d.network]));
  }
  // The front is exactly the undominated feasible designs, and holds the best one.
  for (const Design& d : r.feasible) {
    const bool dominated = std::any_of(r.feasible.begin(), r.feasible.end(),
                                       [&](const Design& o) { return dominates(o, d); });
    const bool on_front = std::any_of(r.front.begin(), r.front.end(),
                                      [&](const Design& f) { return same_pair(f, d); });
    EXPECT_EQ(on_front, !dominated) << search.hardware()[d.hardware].name;
  }
  EXPECT_TRUE(std::any_of(r.front.begin(), r.front.end(),
                          [&](const Design& f) { return same_pair(f, r.best); }));
  for (const Design& d : r.feasible) EXPECT_FALSE(better_design(d, r.best));
  // NAS then ASIC takes the most accurate network ("8-16") at its least energy.
  ASSERT_TRUE(r.nas_then_asic.has_value());
  const Design& base = r.nas_then_asic->design;
  EXPECT_EQ(search.networks()[base.network].name, "8-16");
  EXPECT_GE(base.accuracy, r.best.accuracy);
  if (r.nas_then_asic->meets_limits) {
    for (const Design& d : r.feasible)
      if (d.network == base.network) {
        EXPECT_LE(base.cost.energy_mj, d.cost.energy_mj);
      }
  }
}

TEST(Codesign, NasThenAsicTakesTheClosestDesignWhenNoneMeetsTheLimits) {
  // The smallest latency each network reaches; a limit between the two leaves only "8".
  const CodesignSearch loose(tiny(1e9, 1e9, 1e9));
  std::vector<double> fastest(2, std::numeric_limits<double>::infinity());
  for (size_t n = 0; n < 2; ++n)
    for (size_t h = 0; h < loose.hardware().size(); ++h)
      if (uses_every_sub(loose.cost(n, h), loose.hardware()[h]))
        fastest[n] = std::min(fastest[n], loose.cost(n, h).latency_ms);
  ASSERT_LT(fastest[0], fastest[1]);
  const double limit = (fastest[0] + fastest[1]) / 2;
  const CodesignSearch search(tiny(limit, 1e9, 1e9));
  EXPECT_EQ(search.surviving_networks(), std::vector<size_t>{0});
  EXPECT_EQ(search.networks_to_score(), (std::vector<size_t>{0, 1}));
  std::vector<bool> baseline_only;
  const CodesignResult r = search.run([&](const ScoreRequest& q) {
    baseline_only.push_back(q.baseline_only);
    return fake_accuracy(q.network);
  });
  EXPECT_EQ(baseline_only, (std::vector<bool>{false, true}));
  ASSERT_TRUE(r.nas_then_asic.has_value());
  const NasThenAsic& nas = *r.nas_then_asic;
  EXPECT_FALSE(nas.meets_limits);
  EXPECT_EQ(nas.design.network, 1u);
  EXPECT_DOUBLE_EQ(nas.limit_ratio, fastest[1] / limit);  // latency is the only limit hit
  EXPECT_EQ(search.networks()[r.best.network].name, "8");

  // Without the baseline, the pruned network is not scored at all.
  const CodesignSearch no_baseline(tiny(limit, 1e9, 1e9).nas_then_asic(false));
  int calls = 0;
  const CodesignResult r2 = no_baseline.run([&](const ScoreRequest& q) {
    ++calls;
    return fake_accuracy(q.network);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(r2.nas_then_asic.has_value());
  EXPECT_DOUBLE_EQ(r2.accuracy[1], -1);
}

TEST(Codesign, TighterLimitsPruneAndImpossibleOnesAreErrors) {
  const CodesignSearch loose(tiny(0.02, 0.1, 2));
  const CodesignSearch tight(tiny(0.02, 0.1, 0.9));
  EXPECT_LT(tight.feasible().size(), loose.feasible().size());
  for (const Design& d : tight.feasible()) EXPECT_LE(d.cost.area_mm2, 0.9);

  std::string m = error_of([] { CodesignSearch(tiny(1, 1, 0.0001)); });
  EXPECT_TRUE(has(m, "no design meets the limits") && has(m, "among 20 pairs")) << m;
  m = error_of([] { CodesignSearch(tiny(0.02, 0.1, 2).networks({"8"}).area_mm2(0)); });
  EXPECT_TRUE(has(m, "needs --latency-ms, --energy-mj and --area-mm2")) << m;
  m = error_of([] { CodesignSearch(tiny(1, 1, 1).infer_batch(0)); });
  EXPECT_TRUE(has(m, "--infer-batch 0")) << m;
  m = error_of([] { parse_codesign_network("8-x"); });
  EXPECT_TRUE(has(m, "'8-x'") && has(m, "expected C1 or C1-C2")) << m;
  m = error_of([] { parse_codesign_network("8-16-32"); });
  EXPECT_TRUE(has(m, "got 3 conv blocks, expected 1 or 2")) << m;
  m = error_of([] { hardware_space(HardwareSpaceOptions().templates({"pim-gpt"})); });
  EXPECT_TRUE(has(m, "--templates pim-gpt") && has(m, "cannot run a CNN")) << m;
  m = error_of([] { hardware_space(HardwareSpaceOptions().templates({"foo"})); });
  EXPECT_TRUE(has(m, "preset 'foo'")) << m;
  m = error_of([] { hardware_space(HardwareSpaceOptions().arrays({2})); });
  EXPECT_TRUE(has(m, "--arrays 2") && has(m, "at least 4 PEs")) << m;
}

}  // namespace
}  // namespace strata::accel
