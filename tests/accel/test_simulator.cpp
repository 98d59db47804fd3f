// The simulator: every op a simulated device runs is charged exactly what its device's
// cost model says (GEMMs of Linear forward and backward, the lowered GEMM of a Conv2d,
// the vector unit for element-wise ops), copies are charged once as transfers, ops with no
// model are listed, devices and layers are reported separately.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "strata/accel/device.h"
#include "strata/accel/pipeline_placement.h"
#include "strata/accel/simulator.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"

namespace strata::accel {
namespace {

std::vector<ReportEntry> entries_named(const CostReport& r, const std::string& op) {
  std::vector<ReportEntry> out;
  for (const auto& e : r.entries())
    if (e.op == op) out.push_back(e);
  return out;
}

// Every field the models set, so a mismatch in any one fails.
void expect_same_cost(const OpCost& got, const OpCost& want) {
  EXPECT_EQ(got.cycles, want.cycles);
  EXPECT_EQ(got.compute_cycles, want.compute_cycles);
  EXPECT_EQ(got.stall_cycles, want.stall_cycles);
  EXPECT_EQ(got.macs, want.macs);
  EXPECT_EQ(got.vector_ops, want.vector_ops);
  EXPECT_EQ(got.sram_reads, want.sram_reads);
  EXPECT_EQ(got.sram_writes, want.sram_writes);
  EXPECT_EQ(got.dram_reads, want.dram_reads);
  EXPECT_EQ(got.dram_writes, want.dram_writes);
  EXPECT_DOUBLE_EQ(got.pe_cycles, want.pe_cycles);
  EXPECT_DOUBLE_EQ(got.energy_pj(), want.energy_pj());
}

TEST(AccelSimulator, LinearIsChargedItsForwardAndBackwardGemms) {
  const auto spec = AcceleratorSpec::preset("generic-32");
  auto sim = std::make_shared<Simulator>(spec);
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(8, 6));
  to_device(model, device(0));
  const auto x = torch::randn({4, 8}).to(device(0)).requires_grad_(true);
  {
    RecorderScope scope(sim);
    model->forward(x).sum().backward();
  }
  const CostReport r = sim->report();
  const CostDispatcher d(spec);
  // Forward: x [4 x 8] times W^T [8 x 6].
  const auto fwd = entries_named(r, "aten::addmm");
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].layer, "0");
  expect_same_cost(fwd[0].cost, d.model().gemm({4, 8, 6}));
  // Backward: grad_x = grad [4 x 6] W [6 x 8], grad_W^T = x^T [8 x 4] grad [4 x 6].
  const auto bwd = entries_named(r, "aten::mm");
  ASSERT_EQ(bwd.size(), 2u);
  OpCost got, want = d.model().gemm({4, 6, 8}) + d.model().gemm({8, 4, 6});
  for (const auto& e : bwd) {
    EXPECT_EQ(e.layer, "0");
    got += e.cost;
  }
  expect_same_cost(got, want);
  EXPECT_EQ(got.macs, 2 * 4 * 6 * 8);
  EXPECT_TRUE(r.uncharged().empty()) << r.table();
}

TEST(AccelSimulator, Conv2dIsChargedItsLoweredGemm) {
  const auto spec = AcceleratorSpec::preset("tpu-like");
  auto sim = std::make_shared<Simulator>("generic-32");
  sim->configure(0, spec);
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3).padding(1).stride(2));
  to_device(conv, device(0));
  const auto x = torch::randn({2, 2, 7, 7}).to(device(0));
  {
    RecorderScope scope(sim);
    conv->forward(x).sum().backward();
  }
  const CostReport r = sim->report();
  const CostDispatcher d(spec);
  ConvShape s;
  s.batch = 2, s.in_channels = 2, s.out_channels = 4, s.height = s.width = 7;
  s.kernel_h = s.kernel_w = 3, s.stride_h = s.stride_w = 2, s.pad_h = s.pad_w = 1;
  const GemmShape g = s.lowered();  // M = 2*4*4, K = 2*3*3, N = 4
  EXPECT_EQ(g.m, 32);
  EXPECT_EQ(g.k, 18);
  const auto fwd = entries_named(r, "aten::convolution");
  ASSERT_EQ(fwd.size(), 1u);
  expect_same_cost(fwd[0].cost, d.model().gemm(g));
  // The input needs no gradient: only grad_weight, an N x M by M x K product.
  const auto bwd = entries_named(r, "aten::convolution_backward");
  ASSERT_EQ(bwd.size(), 1u);
  expect_same_cost(bwd[0].cost, d.model().gemm({g.n, g.m, g.k}));
}

TEST(AccelSimulator, TransposedConvIsToldApartByItsOutput) {
  // The device reports no `transposed` flag (a bool); the simulator infers it from the
  // output's sizes. Transposed: every input pixel scatters a kh x kw patch per output
  // channel, M = N*H*W = 25, K = C_in = 4, N = C_out * kh * kw = 18.
  const auto spec = AcceleratorSpec::preset("generic-32");
  auto sim = std::make_shared<Simulator>(spec);
  torch::nn::ConvTranspose2d deconv(torch::nn::ConvTranspose2dOptions(4, 2, 3).stride(2));
  to_device(deconv, device(0));
  const auto x = torch::randn({1, 4, 5, 5}).to(device(0));
  {
    RecorderScope scope(sim);
    EXPECT_EQ(deconv->forward(x).sizes(), (std::vector<int64_t>{1, 2, 11, 11}));
  }
  const auto fwd = entries_named(sim->report(), "aten::convolution");
  ASSERT_EQ(fwd.size(), 1u);
  expect_same_cost(fwd[0].cost, CostDispatcher(spec).model().gemm({25, 4, 18}));
  EXPECT_EQ(fwd[0].cost.macs, 25 * 4 * 18);
}

TEST(AccelSimulator, ElementwiseOpsAreChargedTheVectorUnit) {
  const auto spec = AcceleratorSpec::preset("eyeriss");
  auto sim = std::make_shared<Simulator>(spec);
  const auto a = torch::randn({3, 50}).to(device(0)), b = torch::randn({3, 50}).to(device(0));
  {
    RecorderScope scope(sim);
    torch::relu(a.add(b));
  }
  const CostReport r = sim->report();
  const VectorUnit& v = CostDispatcher(spec).model().vector_unit();
  const int64_t n = 150, w = spec.word_bytes;
  const auto add = entries_named(r, "aten::add");
  const auto relu = entries_named(r, "aten::relu");
  ASSERT_EQ(add.size(), 1u);
  ASSERT_EQ(relu.size(), 1u);
  expect_same_cost(add[0].cost, v.elementwise(n, 1, 2 * n * w, n * w));
  expect_same_cost(relu[0].cost, v.elementwise(n, 1, n * w, n * w));
  EXPECT_GT(relu[0].cost.cycles, 0);
}

TEST(AccelSimulator, CopiesAreChargedOnceWithTheirBytes) {
  auto sim = std::make_shared<Simulator>("nvdla");
  sim->configure(1, AcceleratorSpec::preset("shidiannao"));
  const auto spec0 = sim->spec(0), spec1 = sim->spec(1);
  const auto cpu = torch::randn({5, 7});
  {
    RecorderScope scope(sim);
    const auto on0 = cpu.to(device(0));
    const auto on1 = on0.to(device(1));
    const auto back = on1.to(torch::kCPU);
    EXPECT_TRUE(back.equal(cpu));
  }
  const CostReport r = sim->report();
  ASSERT_EQ(r.entries().size(), 3u) << r.table();
  const int64_t bytes = 5 * 7 * 4;
  const auto in = entries_named(r, "transfer cpu->0");
  const auto across = entries_named(r, "transfer 0->1");
  const auto out = entries_named(r, "transfer 1->cpu");
  ASSERT_EQ(in.size(), 1u);
  ASSERT_EQ(across.size(), 1u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(in[0].device, 0);
  EXPECT_EQ(across[0].device, 1);  // the receiving device pays
  EXPECT_EQ(out[0].device, 1);     // to the CPU: the sending one
  expect_same_cost(in[0].cost, transfer_cost(bytes, nullptr, &spec0));
  expect_same_cost(across[0].cost, transfer_cost(bytes, &spec0, &spec1));
  // The model: bytes over the slower end's bandwidth, one DRAM access per word at each end.
  EXPECT_EQ(in[0].cost.dram_writes, bytes / spec0.word_bytes);
  EXPECT_EQ(in[0].cost.dram_reads, 0);
  EXPECT_EQ(in[0].cost.cycles, static_cast<int64_t>(std::ceil(bytes / spec0.dram_bytes_per_cycle)));
  EXPECT_DOUBLE_EQ(in[0].cost.energy_pj(),
                   static_cast<double>(bytes / spec0.word_bytes) * spec0.energy.dram_write);
  EXPECT_EQ(across[0].cost.dram_reads, bytes / spec0.word_bytes);
  EXPECT_EQ(across[0].cost.dram_writes, bytes / spec1.word_bytes);
  EXPECT_EQ(out[0].cost.dram_reads, bytes / spec1.word_bytes);
  EXPECT_EQ(out[0].cost.dram_writes, 0);
}

TEST(AccelSimulator, OpsWithNoModelAreListedAsUncharged) {
  const auto names = known_aten_ops();
  ASSERT_EQ(std::count(names.begin(), names.end(), "cumprod"), 0);
  auto sim = std::make_shared<Simulator>();
  const auto a = torch::rand({4, 6}).to(device(0));
  {
    RecorderScope scope(sim);
    a.cumprod(1);
    a.cumprod(0);
    a.mul(2.0);
  }
  const CostReport r = sim->report();
  const auto missing = r.uncharged();
  ASSERT_EQ(missing.size(), 1u) << r.table();
  EXPECT_EQ(missing.begin()->first, "aten::cumprod");
  EXPECT_EQ(missing.begin()->second.first, 2);
  EXPECT_EQ(r.per_op().count("aten::cumprod"), 0u);
  EXPECT_EQ(r.per_op().at("aten::mul").calls, 1);
  EXPECT_EQ(r.to_json()["uncharged"][0]["count"], 2);
  EXPECT_NE(r.table().find("aten::cumprod x2"), std::string::npos);
}

TEST(AccelSimulator, TwoDevicesWithDifferentSpecsReportSeparately) {
  auto sim = std::make_shared<Simulator>();
  const auto eyeriss = AcceleratorSpec::preset("eyeriss"),
             tpu = AcceleratorSpec::preset("tpu-like");
  sim->configure(0, eyeriss);
  sim->configure(1, tpu);
  const auto a = torch::randn({64, 48}), b = torch::randn({48, 32});
  const auto a0 = a.to(device(0)), b0 = b.to(device(0)), a1 = a.to(device(1)), b1 = b.to(device(1));
  {
    RecorderScope scope(sim);
    a0.mm(b0);
    a1.mm(b1);
    a1.mm(b1);
  }
  const CostReport r = sim->report();
  const auto per_device = r.per_device();
  ASSERT_EQ(per_device.size(), 2u);
  expect_same_cost(per_device.at(0).cost, CostDispatcher(eyeriss).model().gemm({64, 48, 32}));
  expect_same_cost(per_device.at(1).cost,
                   CostDispatcher(tpu).model().gemm({64, 48, 32}).repeated(2));
  EXPECT_NE(per_device.at(0).cost.cycles, per_device.at(1).cost.cycles / 2);
  const auto json = r.to_json();
  ASSERT_EQ(json["devices"].size(), 2u);
  EXPECT_EQ(json["devices"][0]["name"], "eyeriss");
  EXPECT_EQ(json["devices"][1]["name"], "tpu-like");
  EXPECT_EQ(json["devices"][1]["ops"]["aten::mm"]["calls"], 2);
}

TEST(AccelSimulator, PerLayerTotalsUseModulePaths) {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 3));
  to_device(model, device(0));
  const auto x = torch::randn({5, 4}).to(device(0));
  auto sim = std::make_shared<Simulator>();
  {
    // Attributed by the parameters' tags: the ReLU joins the layer before it.
    RecorderScope scope(sim);
    model->forward(x).sum().backward();
  }
  auto layers = sim->report().per_layer();
  EXPECT_EQ(layers.count("0"), 1u);
  EXPECT_EQ(layers.count("2"), 1u);
  EXPECT_EQ(layers.count("1"), 0u);
  sim->clear();
  {
    // forward_by_layer scopes every child, backward included.
    RecorderScope scope(sim);
    forward_by_layer(model, x).sum().backward();
  }
  const CostReport r = sim->report();
  layers = r.per_layer();
  for (const char* name : {"0", "1", "2"}) EXPECT_EQ(layers.count(name), 1u) << name;
  for (const auto& e : entries_named(r, "aten::threshold_backward")) EXPECT_EQ(e.layer, "1");
  for (const auto& e : entries_named(r, "aten::relu")) EXPECT_EQ(e.layer, "1");
  const CostDispatcher d(sim->spec(0));
  expect_same_cost(entries_named(r, "aten::addmm").back().cost, d.model().gemm({5, 8, 3}));
  EXPECT_EQ(entries_named(r, "aten::addmm").back().layer, "2");
  // The layers add up to the device's total.
  OpCost sum;
  int64_t calls = 0;
  for (const auto& [name, t] : layers) sum += t.cost, calls += t.calls;
  expect_same_cost(sum, r.total().cost);
  EXPECT_EQ(calls, r.total().calls);
}

TEST(AccelSimulator, BadSpecIsAnErrorNamingIt) {
  EXPECT_THROW(Simulator("no-such-preset"), Error);
  Simulator sim;
  auto spec = AcceleratorSpec::preset("eyeriss");
  spec.rows = 0;
  EXPECT_THROW(sim.configure(0, spec), Error);
  EXPECT_THROW(sim.configure(-1, AcceleratorSpec::preset("eyeriss")), Error);
}

}  // namespace
}  // namespace strata::accel
