// The area model: the sum of the table's parts, growing with PEs and SRAM as the table
// says; bad tables and specs are errors naming the field.
#include <gtest/gtest.h>

#include "strata/accel/area_model.h"
#include "strata/core/error.h"

namespace ac = strata::accel;

namespace {

ac::AcceleratorSpec ws(int64_t rows, int64_t cols, double kib_each) {
  return ac::AcceleratorSpec::from_json(
      {{"template", "systolic"},
       {"dataflow", "ws"},
       {"rows", rows},
       {"cols", cols},
       {"sram_kib", {{"ifmap", kib_each}, {"filter", kib_each}, {"ofmap", kib_each}}},
       {"word_bytes", 1},
       {"clock_mhz", 1000},
       {"dram_bytes_per_cycle", 16},
       {"vector_lanes", 16}});
}

}  // namespace

TEST(AreaModel, Int8DefaultsAreTheTablesFigures) {
  const auto t = ac::AreaTable::estimate_45nm(1);
  EXPECT_DOUBLE_EQ(t.mac_um2, 282 + 36);
  EXPECT_DOUBLE_EQ(t.add_um2, 36);
  EXPECT_NEAR(t.sram_mm2_per_kib, 0.00995, 1e-4);
  // 16x16 PEs, 16 lanes, 3 x 32 KiB, overhead.
  const auto a = ac::accelerator_area(ws(16, 16, 32));
  EXPECT_NEAR(a.pe_mm2, 256 * 318e-6, 1e-12);
  EXPECT_NEAR(a.vector_mm2, 16 * 36e-6, 1e-12);
  EXPECT_NEAR(a.sram_mm2, 96 * t.sram_mm2_per_kib, 1e-12);
  EXPECT_DOUBLE_EQ(a.overhead_mm2, 0.2);
  EXPECT_NEAR(a.total_mm2(), a.pe_mm2 + a.vector_mm2 + a.sram_mm2 + 0.2, 1e-12);
}

TEST(AreaModel, GrowsWithPesAndSramByTheTable) {
  const auto t = ac::AreaTable::estimate_45nm(1);
  const double small = ac::accelerator_area(ws(16, 16, 32)).total_mm2();
  const double more_pes = ac::accelerator_area(ws(32, 32, 32)).total_mm2();
  const double more_sram = ac::accelerator_area(ws(16, 16, 64)).total_mm2();
  EXPECT_NEAR(more_pes - small, (1024 - 256) * t.mac_um2 * 1e-6, 1e-9);
  EXPECT_NEAR(more_sram - small, 96 * t.sram_mm2_per_kib, 1e-9);
  // Wider words cost more per PE: fp16 and fp32 MACs are about 10x and 37x an int8 one.
  EXPECT_GT(ac::AreaTable::estimate_45nm(2).mac_um2, 9 * t.mac_um2);
  EXPECT_GT(ac::AreaTable::estimate_45nm(4).mac_um2, 3 * ac::AreaTable::estimate_45nm(2).mac_um2);
}

TEST(AreaModel, ReplacedTableIsUsed) {
  const auto t = ac::AreaTable::from_json({{"mac_um2", 1000}, {"overhead_mm2", 0}},
                                          ac::AreaTable::estimate_45nm(1));
  EXPECT_DOUBLE_EQ(t.mac_um2, 1000);
  EXPECT_DOUBLE_EQ(t.add_um2, 36);  // kept from the base
  const auto a = ac::accelerator_area(ws(8, 8, 1), t);
  EXPECT_NEAR(a.pe_mm2, 64 * 1000e-6, 1e-12);
  EXPECT_DOUBLE_EQ(a.overhead_mm2, 0);
}

TEST(AreaModel, BadInputIsAnErrorNamingIt) {
  const auto base = ac::AreaTable::estimate_45nm(1);
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const strata::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] {
              ac::AreaTable::from_json({{"mac_area", 1}}, base);
            }).find("unknown field 'mac_area'"),
            std::string::npos);
  EXPECT_NE(message([&] {
              ac::AreaTable::from_json({{"mac_um2", -1}}, base);
            }).find("non-negative"),
            std::string::npos);
  EXPECT_NE(message([&] {
              ac::AreaTable::from_json({{"mac_um2", "big"}}, base);
            }).find("'mac_um2'"),
            std::string::npos);
  EXPECT_NE(message([] { ac::AreaTable::estimate_45nm(3); }).find("word_bytes 3"),
            std::string::npos);
  EXPECT_NE(
      message([] { ac::accelerator_area(ac::AcceleratorSpec::preset("pim-gpt")); }).find("pim"),
      std::string::npos);
  auto bad = ws(8, 8, 1);
  bad.rows = 0;
  EXPECT_NE(message([&] { ac::accelerator_area(bad); }).find("rows"), std::string::npos);
}
