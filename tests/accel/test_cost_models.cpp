// The cost models against their documented formulas: SCALE-Sim v2's stall-free cycles,
// utilization, access counts, energy = counts x table, stalls, conv lowering, attention
// mappings, PIM scaling, bad specs.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "strata/accel/accel_spec.h"
#include "strata/accel/attention_array.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/processing_in_memory.h"
#include "strata/accel/row_stationary.h"
#include "strata/accel/systolic_array.h"
#include "strata/accel/vector_unit.h"
#include "strata/core/error.h"

namespace {

using namespace strata::accel;
using nlohmann::json;

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// REFERENCE.md's formulas, written out again here rather than calling the library's.
int64_t scalesim_cycles(Dataflow d, int64_t R, int64_t C, int64_t M, int64_t K, int64_t N) {
  if (d == Dataflow::OutputStationary) return cdiv(M, R) * cdiv(N, C) * (K + R + C - 2) - 1;
  if (d == Dataflow::WeightStationary) return cdiv(K, R) * cdiv(N, C) * (2 * R + C + M - 2) - 1;
  return cdiv(K, R) * cdiv(M, C) * (2 * R + C + N - 2) - 1;
}

AcceleratorSpec systolic(Dataflow d, int64_t rows, int64_t cols, double kib = 64, double bw = 16) {
  AcceleratorSpec s = AcceleratorSpec::preset("generic-32");
  s.dataflow = d;
  s.rows = rows;
  s.cols = cols;
  s.ifmap_sram_kib = s.filter_sram_kib = s.ofmap_sram_kib = kib;
  s.dram_bytes_per_cycle = bw;
  s.validate();
  return s;
}

const Dataflow kDataflows[] = {Dataflow::OutputStationary, Dataflow::WeightStationary,
                               Dataflow::InputStationary};

TEST(SystolicArray, StallFreeCyclesEqualScaleSimOverRandomShapes) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int64_t> array(1, 64), dim(1, 400);
  for (Dataflow d : kDataflows) {
    for (int i = 0; i < 300; ++i) {
      const int64_t R = array(rng), C = array(rng), M = dim(rng), K = dim(rng), N = dim(rng);
      // Huge bandwidth and buffers: no stalls, so cycles are the stall-free ones too.
      const SystolicArray model(systolic(d, R, C, 1e6, 1e9));
      const OpCost c = model.gemm({M, K, N, 1});
      const int64_t expected = scalesim_cycles(d, R, C, M, K, N);
      ASSERT_EQ(c.compute_cycles, expected)
          << to_string(d) << " " << R << "x" << C << " M" << M << " K" << K << " N" << N;
      ASSERT_EQ(c.stall_cycles, 0);
      ASSERT_EQ(c.cycles, expected);
      ASSERT_EQ(c.macs, M * K * N);
      ASSERT_DOUBLE_EQ(c.utilization(), double(M * K * N) / (double(expected) * R * C));
      ASSERT_LE(c.utilization(), 1.0);
    }
  }
}

TEST(SystolicArray, HandCheckedCycles) {
  // os 32x32, 64^3: 2 x 2 folds of (64 + 32 + 32 - 2) cycles, minus one.
  EXPECT_EQ(
      SystolicArray(systolic(Dataflow::OutputStationary, 32, 32)).gemm({64, 64, 64}).compute_cycles,
      4 * 126 - 1);
  // ws 4x4, M 10, K 8, N 4: 2 x 1 folds of (8 + 4 + 10 - 2).
  EXPECT_EQ(
      SystolicArray(systolic(Dataflow::WeightStationary, 4, 4)).gemm({10, 8, 4}).compute_cycles,
      39);
  // is 8x8, M 16, K 8, N 20: 1 x 2 folds of (16 + 8 + 20 - 2).
  EXPECT_EQ(
      SystolicArray(systolic(Dataflow::InputStationary, 8, 8)).gemm({16, 8, 20}).compute_cycles,
      83);
  // A batch of 3 costs three GEMMs.
  const SystolicArray os(systolic(Dataflow::OutputStationary, 32, 32));
  EXPECT_EQ(os.gemm({64, 64, 64, 3}).compute_cycles, 3 * 503);
  // A long reduction on a full array approaches full utilization.
  const SystolicArray roomy(systolic(Dataflow::OutputStationary, 32, 32, 1e5, 1e9));
  EXPECT_GT(roomy.gemm({32, 100000, 32}).utilization(), 0.999);
}

TEST(SystolicArray, AccessCountsFollowTheDataflow) {
  const int64_t M = 100, K = 70, N = 50, R = 16, C = 8;
  const int64_t mk = M * K, kn = K * N, mn = M * N;
  {  // os: every output written once; ifmap per column fold, filter per row fold
    const OpCost c = SystolicArray(systolic(Dataflow::OutputStationary, R, C)).gemm({M, K, N});
    EXPECT_EQ(c.sram_writes, mn);
    EXPECT_EQ(c.sram_reads, mk * cdiv(N, C) + kn * cdiv(M, R));
    EXPECT_EQ(c.dram_reads, mk + kn);  // both fit 64 KiB: read once
    EXPECT_EQ(c.dram_writes, mn);
  }
  {  // ws: weights once, partial sums per K fold (written, and read back after the first)
    const OpCost c = SystolicArray(systolic(Dataflow::WeightStationary, R, C)).gemm({M, K, N});
    EXPECT_EQ(c.sram_writes, mn * cdiv(K, R));
    EXPECT_EQ(c.sram_reads, kn + mk * cdiv(N, C) + mn * (cdiv(K, R) - 1));
    EXPECT_EQ(c.dram_writes, mn);  // partial sums fit the ofmap buffer
  }
  {  // is: inputs once
    const OpCost c = SystolicArray(systolic(Dataflow::InputStationary, R, C)).gemm({M, K, N});
    EXPECT_EQ(c.sram_reads, mk + kn * cdiv(M, C) + mn * (cdiv(K, R) - 1));
  }
  {  // Buffers too small for anything: every SRAM read is a DRAM fetch, partial sums spill.
    const OpCost c =
        SystolicArray(systolic(Dataflow::WeightStationary, R, C, 0.01)).gemm({M, K, N});
    EXPECT_EQ(c.dram_reads, c.sram_reads);
    EXPECT_EQ(c.dram_writes, c.sram_writes);
  }
}

TEST(SystolicArray, EnergyIsCountsTimesTheTable) {
  AcceleratorSpec spec = systolic(Dataflow::WeightStationary, 16, 16, 1, 4);
  const OpCost c = SystolicArray(spec).gemm({200, 90, 40});
  const EnergyTable& t = spec.energy;
  EXPECT_DOUBLE_EQ(t.mac, 1.1 + 0.4);  // generic-32 is fp16: Horowitz's fp16 multiply + add
  EXPECT_DOUBLE_EQ(c.energy.mac, c.macs * t.mac);
  EXPECT_DOUBLE_EQ(c.energy.sram, c.sram_reads * t.sram_read + c.sram_writes * t.sram_write);
  EXPECT_DOUBLE_EQ(c.energy.dram, c.dram_reads * t.dram_read + c.dram_writes * t.dram_write);
  EXPECT_DOUBLE_EQ(c.energy_pj(), c.energy.mac + c.energy.sram + c.energy.dram + c.energy.vector);
  // Replace the table: each part follows its own entry.
  spec.energy = {2 * t.mac, 0, 0, 3 * t.dram_read, 3 * t.dram_write, 0};
  const OpCost d = SystolicArray(spec).gemm({200, 90, 40});
  EXPECT_DOUBLE_EQ(d.energy.mac, 2 * c.energy.mac);
  EXPECT_DOUBLE_EQ(d.energy.sram, 0);
  EXPECT_DOUBLE_EQ(d.energy.dram, 3 * c.energy.dram);
  EXPECT_EQ(d.cycles, c.cycles);
}

TEST(SystolicArray, StallsAppearWithTinyBandwidthAndVanishWithHugeOne) {
  for (Dataflow d : kDataflows) {
    const GemmShape g{256, 512, 128};
    const OpCost slow = SystolicArray(systolic(d, 16, 16, 1, 0.05)).gemm(g);
    const int64_t bytes = (slow.dram_reads + slow.dram_writes) * 2;
    EXPECT_GT(slow.stall_cycles, 0) << to_string(d);
    EXPECT_EQ(slow.cycles, slow.compute_cycles + slow.stall_cycles);
    EXPECT_EQ(slow.cycles, static_cast<int64_t>(std::ceil(bytes / 0.05)));  // memory bound
    EXPECT_LT(slow.utilization(), double(slow.macs) / (slow.compute_cycles * 256.0));
    const OpCost fast = SystolicArray(systolic(d, 16, 16, 1e5, 1e9)).gemm(g);
    EXPECT_EQ(fast.stall_cycles, 0);
    EXPECT_EQ(fast.compute_cycles, slow.compute_cycles);
    EXPECT_LT(fast.dram_reads, slow.dram_reads);  // big buffers: operands fetched once
  }
}

TEST(SystolicArray, ConvolutionEqualsTheGemmItLowersTo) {
  ConvShape conv;  // fmnist-cnn's first layer
  conv.batch = 8, conv.in_channels = 1, conv.out_channels = 16, conv.height = conv.width = 28;
  conv.kernel_h = conv.kernel_w = 5, conv.pad_h = conv.pad_w = 2;
  const GemmShape g = conv.lowered();
  EXPECT_EQ(g.m, 8 * 28 * 28);
  EXPECT_EQ(g.k, 25);
  EXPECT_EQ(g.n, 16);
  for (Dataflow d : kDataflows) {
    const SystolicArray model(systolic(d, 32, 32));
    EXPECT_EQ(model.conv(conv).to_json(), model.gemm(g).to_json()) << to_string(d);
  }
  // Grouped, strided: one GEMM per group.
  conv.in_channels = 8, conv.out_channels = 12, conv.groups = 4, conv.stride_h = conv.stride_w = 2;
  const SystolicArray model(systolic(Dataflow::OutputStationary, 8, 8));
  const OpCost per_group = model.gemm({8 * 14 * 14, 2 * 25, 3, 1});
  EXPECT_EQ(model.conv(conv).to_json(), per_group.repeated(4).to_json());
  EXPECT_EQ(model.conv(conv).macs, 4 * (8 * 14 * 14) * 50 * 3);
}

TEST(RowStationary, HandCheckedMappingAndGemm) {
  AcceleratorSpec eyeriss = AcceleratorSpec::preset("eyeriss");  // 12 x 14
  eyeriss.dram_bytes_per_cycle = 1e9;                            // no stalls: the mapping alone
  const RowStationary model(eyeriss);
  ConvShape conv;  // 3x3 kernel, 14x14 input, 12x12 output, 4 in, 4 out channels
  conv.in_channels = 4, conv.out_channels = 4, conv.height = conv.width = 14,
  conv.kernel_h = conv.kernel_w = 3;
  const OpCost c = model.conv(conv);
  // PE sets of 3 x 12: v = floor(12/3) = 4 input channels down, h = floor(14/12) = 1
  // output channel across: 1 input-channel block x 4 output-channel blocks = 4 passes of
  // 3 * 12 MACs per PE plus 3 * 4 - 1 cycles of vertical accumulation.
  EXPECT_EQ(c.compute_cycles, 4 * (3 * 12 + 11));
  EXPECT_EQ(c.macs, 4 * 4 * 12 * 12 * 9);
  EXPECT_NEAR(c.utilization(), 20736.0 / (188.0 * 168.0), 1e-12);
  // Outputs written once (all 4 input channels summed in the array), never read back;
  // filters once per (output, input channel); all 14 input rows once per output channel.
  EXPECT_EQ(c.sram_writes, 4 * 12 * 12);
  EXPECT_EQ(c.sram_reads, 16 * 9 + 4 * 14 * 14 * 4);
  // A GEMM is a 1x1 convolution of a 1 x M image.
  ConvShape one;
  one.in_channels = 30, one.out_channels = 20, one.height = 1, one.width = 50,
  one.kernel_h = one.kernel_w = 1;
  EXPECT_EQ(model.gemm({50, 30, 20}).to_json(), model.conv(one).to_json());
  // Random shapes stay within the array's peak.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> ch(1, 40), hw(5, 40), k(1, 7);
  for (int i = 0; i < 100; ++i) {
    ConvShape s;
    s.batch = 2, s.in_channels = ch(rng), s.out_channels = ch(rng), s.height = hw(rng),
    s.width = hw(rng);
    s.kernel_h = k(rng), s.kernel_w = k(rng), s.pad_h = s.pad_w = 1;
    if (s.kernel_h > 14) continue;
    const OpCost r = model.conv(s);
    ASSERT_EQ(r.macs, s.macs());
    ASSERT_GT(r.utilization(), 0);
    ASSERT_LE(r.utilization(), 1.0);
  }
}

TEST(ProcessingInMemory, CyclesScaleWithRowsAndBanksAsDocumented) {
  AcceleratorSpec spec = AcceleratorSpec::preset("pim-gpt");  // 128 banks, 16 MACs per access
  const ProcessingInMemory pim(spec);
  const int64_t K = 1024, N = 4096;
  const OpCost one = pim.gemv(K, N);
  const int64_t per_bank = K * N / 128, row_words = 2048 / 2;
  EXPECT_EQ(one.compute_cycles, per_bank / 16 * 2);
  EXPECT_EQ(one.stall_cycles, per_bank / row_words * (18 + 18) + cdiv(K * 2, 64) + cdiv(N * 2, 64));
  EXPECT_EQ(one.macs, K * N);
  EXPECT_EQ(one.dram_reads, K * N);
  // M rows: M GEMVs, no reuse.
  EXPECT_EQ(pim.gemm({4, K, N}).cycles, 4 * one.cycles);
  EXPECT_EQ(pim.gemm({4, K, N}).to_json(), one.repeated(4).to_json());
  // Twice the banks: half the streaming and activations per bank.
  spec.pim.banks = 256;
  const OpCost wide = ProcessingInMemory(spec).gemv(K, N);
  EXPECT_EQ(wide.compute_cycles, one.compute_cycles / 2);
  EXPECT_LT(wide.cycles, one.cycles);
  EXPECT_GT(wide.cycles, one.cycles / 2 - 1);  // the bus transfers do not shrink
  // Utilization against banks * macs_per_access / t_ccd MACs per cycle.
  EXPECT_NEAR(one.utilization(), double(K * N) / (one.cycles * 128.0 * 16 / 2), 1e-12);
}

TEST(AttentionArray, FusedMovesLessAndUsesMoreThanFlatThanUnfused) {
  const AcceleratorSpec spec = AcceleratorSpec::preset("fusemax");
  const AttentionArray model(spec);
  AttentionShape a;
  a.batch = 1, a.heads = 2, a.seq_q = a.seq_kv = 8192, a.head_dim = 64;
  std::map<AttentionMapping, OpCost> cost;
  for (auto m : {AttentionMapping::Unfused, AttentionMapping::Flat, AttentionMapping::Fused}) {
    a.mapping = m;
    cost[m] = model.attention(a);
    EXPECT_EQ(cost[m].macs, a.macs()) << to_string(m);
  }
  const auto traffic = [&](AttentionMapping m) { return cost[m].dram_reads + cost[m].dram_writes; };
  EXPECT_LT(traffic(AttentionMapping::Fused), traffic(AttentionMapping::Flat));
  EXPECT_LT(traffic(AttentionMapping::Flat), traffic(AttentionMapping::Unfused));
  EXPECT_GT(cost[AttentionMapping::Fused].utilization(),
            cost[AttentionMapping::Flat].utilization());
  EXPECT_GT(cost[AttentionMapping::Flat].utilization(),
            cost[AttentionMapping::Unfused].utilization());
  EXPECT_GT(cost[AttentionMapping::Fused].utilization(), 0.8);
  // Fused: Q read and O written once; K and V (512K words each) fit the 2M-word filter
  // buffer, so they are read once too.
  EXPECT_EQ(cost[AttentionMapping::Fused].dram_reads, 2 * (8192 * 64 * 3));
  EXPECT_EQ(cost[AttentionMapping::Fused].dram_writes, 2 * 8192 * 64);
  // The unfused mapping is what any model charges: two GEMMs and a softmax pass.
  a.mapping = AttentionMapping::Unfused;
  const SystolicArray os(spec);
  const VectorUnit vec(spec);
  const int64_t s = 8192 * 8192;
  const OpCost expected =
      (os.gemm({8192, 64, 8192}) + vec.elementwise(s, 5, 2 * s, 2 * s) + os.gemm({8192, 8192, 64}))
          .repeated(2);
  EXPECT_EQ(cost[AttentionMapping::Unfused].to_json(), expected.to_json());
}

TEST(VectorUnit, NothingIsFree) {
  const AcceleratorSpec spec =
      systolic(Dataflow::OutputStationary, 32, 32, 64, 1e9);  // 32 lanes, fp16
  const VectorUnit v(spec);
  const OpCost relu = v.elementwise(1000, 1, 2000, 2000);
  EXPECT_EQ(relu.compute_cycles, cdiv(1000, 32));
  EXPECT_EQ(relu.dram_reads, 1000);
  EXPECT_EQ(relu.dram_writes, 1000);
  EXPECT_EQ(relu.vector_ops, 1000);
  EXPECT_DOUBLE_EQ(relu.energy.vector, 1000 * spec.energy.vector_op);
  EXPECT_EQ(v.elementwise(1000, 4, 2000, 2000).compute_cycles, cdiv(4000, 32));
  const OpCost copy = v.copy(4096);
  EXPECT_GT(copy.cycles, 0);
  EXPECT_GT(copy.energy_pj(), 0);
  EXPECT_EQ(copy.dram_reads, 2048);
  // Utilization of an op without MACs is zero, but its cycles still count against the array.
  EXPECT_EQ(relu.utilization(), 0);
  EXPECT_DOUBLE_EQ(relu.pe_cycles, relu.cycles * 1024.0);
}

TEST(CostDispatcher, RoutesEachKindAndListsWhatItCannotCharge) {
  const AcceleratorSpec spec = AcceleratorSpec::preset("nvdla");
  const CostDispatcher device(spec);
  EXPECT_EQ(device.model().name(), "systolic-ws");
  const Charge g = device.charge(OpDescription::gemm("fc", {{256, 1568, 10}, {10, 256, 1568}}));
  ASSERT_TRUE(g.charged);
  EXPECT_EQ(g.cost.to_json(),
            (SystolicArray(spec).gemm({256, 1568, 10}) + SystolicArray(spec).gemm({10, 256, 1568}))
                .to_json());
  const Charge e = device.charge(OpDescription::elementwise("relu", 100, 1, 100, 100));
  ASSERT_TRUE(e.charged);
  EXPECT_GT(e.cost.cycles, 0);
  const Charge v = device.charge(OpDescription::view("view"));
  EXPECT_TRUE(v.charged);
  EXPECT_EQ(v.cost.cycles, 0);
  const Charge u = device.charge(OpDescription::unknown("aten::fft_fft", "no model for FFTs"));
  EXPECT_FALSE(u.charged);
  EXPECT_EQ(u.reason, "no model for FFTs");
  const Charge bad = device.charge(OpDescription::gemm("mm", {{0, 3, 4}}));
  EXPECT_FALSE(bad.charged);
  EXPECT_NE(bad.reason.find("GEMM m"), std::string::npos);
  // Each template gets its model.
  EXPECT_EQ(CostDispatcher(AcceleratorSpec::preset("eyeriss")).model().name(), "row-stationary");
  EXPECT_EQ(CostDispatcher(AcceleratorSpec::preset("pim-gpt")).model().name(), "pim");
  EXPECT_EQ(CostDispatcher(AcceleratorSpec::preset("fusemax")).model().name(), "attention-array");
}

// Sizes whose cost does not fit in 64 bits are an error naming the op, in every cost model
// (issue 23: a 4e12-cubed GEMM reported negative cycles).
TEST(CostDispatcher, OverflowIsAnErrorNamingTheOpNeverANegativeCount) {
  const auto overflow = [](const std::string& preset, const OpDescription& op) {
    try {
      const Charge c = CostDispatcher(AcceleratorSpec::preset(preset)).charge(op);
      return "(charged, cycles " + std::to_string(c.cost.cycles) + ")";
    } catch (const strata::Error& e) {
      return std::string(e.what());
    }
  };
  const int64_t huge = 4'000'000'000'000;
  for (const char* preset :
       {"generic-32", "nvdla", "shidiannao", "eyeriss", "fusemax", "pim-gpt"}) {
    const std::string m = overflow(preset, OpDescription::gemm("big", {{huge, huge, huge}}));
    EXPECT_NE(m.find("big (gemm): its cost overflows: "), std::string::npos) << preset << ": " << m;
    EXPECT_NE(m.find("does not fit in a 64-bit integer"), std::string::npos) << preset << ": " << m;
  }
  ConvShape conv;
  conv.batch = 1'000'000'000'000'000;
  conv.in_channels = 1'000'000'000;
  conv.out_channels = 8;
  conv.height = conv.width = 1000;
  conv.kernel_h = conv.kernel_w = 1;
  for (const char* preset : {"generic-32", "eyeriss"})
    EXPECT_NE(overflow(preset, OpDescription::convolution("c1", conv))
                  .find("c1 (conv): its cost "
                        "overflows"),
              std::string::npos)
        << preset;
  AttentionShape a;
  a.seq_q = a.seq_kv = a.head_dim = 100'000'000'000'000;
  for (auto mapping :
       {AttentionMapping::Unfused, AttentionMapping::Flat, AttentionMapping::Fused}) {
    a.mapping = mapping;
    EXPECT_NE(overflow("fusemax", OpDescription::attention_op("sdpa", a)).find("sdpa (attention)"),
              std::string::npos);
  }
  // The largest array a spec allows with the largest GEMM that fits: counts stay positive.
  const AcceleratorSpec wide = systolic(Dataflow::OutputStationary, kMaxArraySide, kMaxArraySide);
  const OpCost c = SystolicArray(wide).gemm({1'000'000, 1'000'000, 1'000'000});
  EXPECT_EQ(c.macs, 1'000'000'000'000'000'000);
  EXPECT_GT(c.cycles, 0);
  EXPECT_GT(c.sram_reads, 0);
}

TEST(AcceleratorSpec, EveryFieldHasAStatedRange) {
  const auto error_of = [](const json& j) {
    try {
      AcceleratorSpec::from_json(j, "spec file s.json");
    } catch (const strata::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const auto with = [](const char* preset, const json& fields) {
    json j = fields;
    j["preset"] = preset;
    return j;
  };
  EXPECT_EQ(
      error_of(with("generic-32", {{"rows", 9223372036854775807}})),
      "spec file s.json: field 'rows': got 9223372036854775807, expected an integer between 1 "
      "and 65536");
  EXPECT_EQ(error_of(with("generic-32", {{"cols", 65537}})),
            "spec file s.json: field 'cols': got 65537, expected an integer between 1 and 65536");
  EXPECT_NE(
      error_of(with("generic-32", {{"clock_mhz", 1e300}})).find("field 'clock_mhz': got 1e+300"),
      std::string::npos);
  EXPECT_NE(
      error_of(with("generic-32", {{"dram_bytes_per_cycle", 1e10}}))
          .find("field 'dram_bytes_per_cycle': got 1e+10, expected a number greater than 0 and "
                "at most 1e+09"),
      std::string::npos);
  EXPECT_NE(error_of(with("generic-32", {{"word_bytes", 4096}})).find("field 'word_bytes'"),
            std::string::npos);
  EXPECT_NE(error_of(with("generic-32", {{"vector_lanes", 1 << 21}})).find("field 'vector_lanes'"),
            std::string::npos);
  EXPECT_NE(error_of(with("generic-32", {{"sram_kib", {{"ofmap", 1e30}}}}))
                .find("field 'sram_kib.ofmap'"),
            std::string::npos);
  EXPECT_NE(error_of(with("generic-32", {{"energy_pj", {{"dram_read", 1e300}}}}))
                .find("field 'energy_pj.dram_read'"),
            std::string::npos);
  for (const char* field : {"banks", "macs_per_access", "t_ccd", "t_rcd", "t_rp"})
    EXPECT_NE(error_of(with("pim-gpt", {{"pim", {{field, int64_t{1} << 40}}}}))
                  .find(std::string("field 'pim.") + field + "'"),
              std::string::npos)
        << field;
  // The presets and the example spec files are inside every range.
  for (const std::string& name : preset_names()) EXPECT_NO_THROW(AcceleratorSpec::preset(name));
}

TEST(OpCost, SumsKeepUtilizationAndEnergy) {
  const SystolicArray model(systolic(Dataflow::OutputStationary, 8, 8));
  const OpCost a = model.gemm({10, 20, 30}), b = model.gemm({64, 64, 64});
  const OpCost s = a + b;
  EXPECT_EQ(s.cycles, a.cycles + b.cycles);
  EXPECT_EQ(s.macs, a.macs + b.macs);
  EXPECT_DOUBLE_EQ(s.utilization(), double(a.macs + b.macs) / ((a.cycles + b.cycles) * 64.0));
  EXPECT_DOUBLE_EQ(s.energy_pj(), a.energy_pj() + b.energy_pj());
  const json j = s.to_json();
  for (const char* key : {"cycles", "stall_cycles", "utilization", "sram_reads", "sram_writes",
                          "dram_reads", "dram_writes", "energy_pj"})
    EXPECT_TRUE(j.contains(key)) << key;
}

// ---- specs ----

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const strata::Error& e) {
    return e.what();
  }
  return "(no error)";
}

json valid_spec() {
  return json::parse(
      R"({"name": "t", "template": "systolic", "dataflow": "ws", "rows": 16, "cols": 8,
                         "sram_kib": {"ifmap": 32, "filter": 32, "ofmap": 16}, "word_bytes": 1,
                         "clock_mhz": 500, "dram_bytes_per_cycle": 8})");
}

TEST(AcceleratorSpec, ParsesFilesPresetsAndOverrides) {
  const AcceleratorSpec s = AcceleratorSpec::from_json(valid_spec());
  EXPECT_EQ(s.kind, Template::Systolic);
  EXPECT_EQ(s.dataflow, Dataflow::WeightStationary);
  EXPECT_EQ(s.rows, 16);
  EXPECT_EQ(s.cols, 8);
  EXPECT_EQ(s.vector_lanes, 8);  // default: one lane per column
  EXPECT_EQ(s.filter_words(), 32 * 1024);
  EXPECT_DOUBLE_EQ(s.energy.mac, 0.2 + 0.03);  // int8 45 nm default
  EXPECT_DOUBLE_EQ(s.energy.sram_read, 10.0 / 8);
  // Round trip.
  EXPECT_EQ(AcceleratorSpec::from_json(s.to_json()).to_json(), s.to_json());
  // Every preset parses, round-trips and builds its model.
  for (const auto& name : preset_names()) {
    const AcceleratorSpec p = AcceleratorSpec::resolve(name);
    EXPECT_EQ(p.name, name);
    EXPECT_EQ(AcceleratorSpec::from_json(p.to_json()).to_json(), p.to_json()) << name;
    EXPECT_FALSE(preset_description(name).empty());
    EXPECT_NE(make_cost_model(p), nullptr);
  }
  // A preset with fields replaced; the energy table follows a new word size.
  const AcceleratorSpec e = AcceleratorSpec::from_json(json::parse(
      R"({"preset": "eyeriss", "rows": 16, "word_bytes": 4, "energy_pj": {"dram_read": 100}})"));
  EXPECT_EQ(e.kind, Template::RowStationary);
  EXPECT_EQ(e.rows, 16);
  EXPECT_EQ(e.cols, 14);
  EXPECT_DOUBLE_EQ(e.energy.mac, 3.7 + 0.9);
  EXPECT_DOUBLE_EQ(e.energy.dram_read, 100);
}

TEST(AcceleratorSpec, ExampleSpecFilesLoad) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(STRATA_SOURCE_DIR "/accel/specs")) {
    if (entry.path().extension() != ".json") continue;
    const AcceleratorSpec s = AcceleratorSpec::load(entry.path().string());
    EXPECT_NE(make_cost_model(s), nullptr) << entry.path();
    ++count;
  }
  EXPECT_GE(count, 3);
}

TEST(AcceleratorSpec, BadSpecsNameTheField) {
  const auto bad = [](const std::function<void(json&)>& edit) {
    json j = valid_spec();
    edit(j);
    return error_of([&] { AcceleratorSpec::from_json(j, "spec file s.json"); });
  };
  const auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos;
  };
  std::string m = bad([](json& j) { j["template"] = "dataflow-graph"; });
  EXPECT_TRUE(has(m, "spec file s.json") && has(m, "'template'") && has(m, "dataflow-graph")) << m;
  m = bad([](json& j) { j["rows"] = 0; });
  EXPECT_TRUE(has(m, "'rows'") && has(m, "got 0") && has(m, "between 1 and 65536")) << m;
  m = bad([](json& j) { j["cols"] = -4; });
  EXPECT_TRUE(has(m, "'cols'") && has(m, "-4")) << m;
  m = bad([](json& j) { j.erase("clock_mhz"); });
  EXPECT_TRUE(has(m, "missing field 'clock_mhz'")) << m;
  m = bad([](json& j) { j.erase("dataflow"); });
  EXPECT_TRUE(has(m, "missing field 'dataflow'")) << m;
  m = bad([](json& j) { j["sram_kib"].erase("filter"); });
  EXPECT_TRUE(has(m, "missing field 'sram_kib.filter'")) << m;
  m = bad([](json& j) { j["rows"] = "32"; });
  EXPECT_TRUE(has(m, "'rows'") && has(m, "a string") && has(m, "expected an integer")) << m;
  m = bad([](json& j) { j["rows"] = 3.5; });
  EXPECT_TRUE(has(m, "'rows'") && has(m, "expected an integer")) << m;
  m = bad([](json& j) { j["colz"] = 4; });
  EXPECT_TRUE(has(m, "unknown field 'colz'")) << m;
  m = bad([](json& j) { j["energy_pj"] = {{"macc", 1}}; });
  EXPECT_TRUE(has(m, "unknown field 'energy_pj.macc'")) << m;
  m = bad([](json& j) { j["energy_pj"] = {{"mac", -1}}; });
  EXPECT_TRUE(has(m, "'energy_pj.mac'")) << m;
  m = bad([](json& j) { j["dataflow"] = "rs"; });
  EXPECT_TRUE(has(m, "'dataflow'") && has(m, "os, ws or is")) << m;
  m = bad([](json& j) { j["word_bytes"] = 3; });
  EXPECT_TRUE(has(m, "'word_bytes'") && has(m, "energy_pj")) << m;
  m = bad([](json& j) { j["word_bytes"] = 8, j["energy_pj"] = {{"mac", 9}}; });
  EXPECT_TRUE(has(m, "missing field 'energy_pj.sram_read'") && has(m, "word_bytes 8")) << m;
  json fp64 = valid_spec();
  fp64["word_bytes"] = 8;
  fp64["energy_pj"] = {{"mac", 9},          {"sram_read", 20},    {"sram_write", 20},
                       {"dram_read", 3900}, {"dram_write", 3900}, {"vector_op", 2}};
  EXPECT_DOUBLE_EQ(AcceleratorSpec::from_json(fp64).energy.dram_write, 3900);
  m = bad([](json& j) { j = {{"preset", "tpu-v9"}}; });
  EXPECT_TRUE(has(m, "'preset'") && has(m, "tpu-v9") && has(m, "eyeriss")) << m;
  m = bad([](json& j) {
    j = {{"template", "pim"}, {"word_bytes", 2}, {"clock_mhz", 1}, {"dram_bytes_per_cycle", 1}};
  });
  EXPECT_TRUE(has(m, "missing field 'pim'")) << m;
  m = bad([](json& j) { j = {{"preset", "pim-gpt"}, {"pim", {{"banks", 0}}}}; });
  EXPECT_TRUE(has(m, "'pim.banks'")) << m;
  // Files: missing, not JSON, and a bad one naming the file.
  EXPECT_TRUE(has(error_of([] { AcceleratorSpec::resolve("/nonexistent/x.json"); }),
                  "/nonexistent/x.json"));
  const std::string path = ::testing::TempDir() + "/bad_spec.json";
  std::ofstream(path) << "{\"template\": \"systolic\", \"rows\": 0";
  EXPECT_TRUE(has(error_of([&] { AcceleratorSpec::load(path); }), "not valid JSON"));
  json j = valid_spec();
  j["rows"] = 0;
  std::ofstream(path) << j.dump();
  m = error_of([&] { AcceleratorSpec::load(path); });
  EXPECT_TRUE(has(m, path) && has(m, "'rows'")) << m;
  std::remove(path.c_str());
}

}  // namespace
