// CostReport: totals per op, layer and device; uncharged ops; JSON, table and trace.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "strata/accel/aten_ops.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/report.h"
#include "strata/core/error.h"

namespace {

using namespace strata::accel;

TEST(CostReport, TotalsTableJsonAndTrace) {
  const AcceleratorSpec a = AcceleratorSpec::preset("nvdla"),
                        b = AcceleratorSpec::preset("eyeriss");
  const CostDispatcher da(a), db(b);
  CostReport report;
  report.set_device(0, a.name, a.clock_mhz);
  report.set_device(1, b.name, b.clock_mhz);
  const OpDescription mm = describe_aten_op("aten::mm", {{64, 32}, {32, 16}}, {{64, 16}}, 4);
  const OpDescription relu = describe_aten_op("aten::relu", {{64, 16}}, {{64, 16}}, 4);
  const OpDescription fft = describe_aten_op("aten::fft_fft", {{64}}, {{64}}, 4);
  report.add(0, "fc1", "aten::mm", da.charge(mm));
  report.add(0, "act", "aten::relu", da.charge(relu));
  report.add(0, "fc1", "aten::mm", da.charge(mm));
  report.add(1, "fc2", "aten::mm", db.charge(mm));
  report.add(1, "fc2", "aten::fft_fft", db.charge(fft));
  report.add(1, "fc2", "aten::fft_fft", db.charge(fft));

  const OpCost mm_a = da.charge(mm).cost, relu_a = da.charge(relu).cost, mm_b = db.charge(mm).cost;
  const auto ops0 = report.per_op(0);
  EXPECT_EQ(ops0.at("aten::mm").calls, 2);
  EXPECT_EQ(ops0.at("aten::mm").cost.cycles, 2 * mm_a.cycles);
  EXPECT_EQ(report.per_layer(0).at("fc1").cost.cycles, 2 * mm_a.cycles);
  EXPECT_EQ(report.per_layer().at("fc2").cost.cycles, mm_b.cycles);
  EXPECT_EQ(report.per_device().at(0).cost.cycles, 2 * mm_a.cycles + relu_a.cycles);
  EXPECT_EQ(report.per_device().at(1).calls, 1);
  EXPECT_EQ(report.total().cost.cycles, 2 * mm_a.cycles + relu_a.cycles + mm_b.cycles);
  EXPECT_DOUBLE_EQ(report.total().cost.energy_pj(),
                   2 * mm_a.energy_pj() + relu_a.energy_pj() + mm_b.energy_pj());
  const auto missing = report.uncharged();
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing.at("aten::fft_fft").first, 2);

  const nlohmann::json j = report.to_json();
  EXPECT_EQ(j["total"]["cycles"], report.total().cost.cycles);
  EXPECT_EQ(j["devices"].size(), 2u);
  EXPECT_EQ(j["devices"][1]["name"], "eyeriss");
  EXPECT_EQ(j["devices"][0]["ops"]["aten::mm"]["calls"], 2);
  EXPECT_EQ(j["uncharged"][0]["op"], "aten::fft_fft");

  const std::string table = report.table();
  for (const char* part :
       {"device 0 (nvdla", "device 1 (eyeriss", "fc1", "aten::relu", "uncharged", "fft_fft x2"})
    EXPECT_NE(table.find(part), std::string::npos) << part << "\n" << table;

  // The trace: one row per device, ops end to end at the device's clock.
  const auto trace = report.chrome_trace().to_json();
  std::vector<nlohmann::json> boxes;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X") boxes.push_back(e);
  ASSERT_EQ(boxes.size(), 4u);
  EXPECT_EQ(boxes[0]["pid"], 0);
  EXPECT_DOUBLE_EQ(boxes[0]["dur"].get<double>(), mm_a.cycles / a.clock_mhz);
  EXPECT_DOUBLE_EQ(boxes[1]["ts"].get<double>(), mm_a.cycles / a.clock_mhz);
  EXPECT_DOUBLE_EQ(boxes[3]["ts"].get<double>(), 0.0);  // device 1's row starts at its own zero
  EXPECT_DOUBLE_EQ(boxes[3]["dur"].get<double>(), mm_b.cycles / b.clock_mhz);
  const std::string path = ::testing::TempDir() + "/accel_trace.json";
  report.write_chrome_trace(path);
  EXPECT_TRUE(std::filesystem::exists(path));
  std::filesystem::remove(path);

  CostReport unnamed;
  unnamed.add(3, "", "aten::mm", mm_a);
  EXPECT_THROW(unnamed.chrome_trace(), strata::Error);
  EXPECT_NE(unnamed.table().find("(no layer)"), std::string::npos);
}

}  // namespace
