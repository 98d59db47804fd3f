// Pipeline placement on heterogeneous simulated devices: the splitter's balance, each
// stage's ops on its own device, the activations and gradients between them charged as
// transfers, and the per-stage report adding up. The pipeline that runs the stages is
// parallel's (tests/core/test_simulated_time.cpp, tests/tools/test_strata_accel.sh).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/accel/device.h"
#include "strata/accel/op_recorder.h"
#include "strata/accel/pipeline_placement.h"
#include "strata/accel/simulator.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"

namespace strata::accel {
namespace {

TEST(AccelPipeline, BalanceStagesMinimizesTheLargestStage) {
  EXPECT_EQ(balance_stages({{1, 1, 1, 5}, {1, 1, 1, 5}}), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(balance_stages({{2, 2, 2, 2, 2, 2}, {2, 2, 2, 2, 2, 2}, {2, 2, 2, 2, 2, 2}}),
            (std::vector<int64_t>{2, 2, 2}));
  // Heterogeneous: the second device is four times as fast, so it takes three layers.
  EXPECT_EQ(balance_stages({{4, 4, 4, 4}, {1, 1, 1, 1}}), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(balance_stages({{7, 1, 1}}), (std::vector<int64_t>{3}));
  // A cut that copies a large activation moves to where the copy is small.
  const std::vector<std::vector<double>> flat{{2, 2, 2, 2}, {2, 2, 2, 2}};
  EXPECT_EQ(balance_stages(flat), (std::vector<int64_t>{2, 2}));
  const std::vector<std::vector<double>> enter{{0, 0, 0, 0}, {0, 9, 5, 0}};
  EXPECT_EQ(balance_stages(flat, enter, {}), (std::vector<int64_t>{3, 1}));  // max(6, 2 + 0)
  const std::vector<std::vector<double>> leave{{0, 0, 0, 7}, {0, 0, 0, 0}};
  EXPECT_EQ(balance_stages(flat, enter, leave),
            (std::vector<int64_t>{2, 2}));  // max(4, 4 + 5) < max(6 + 7, 2)
  EXPECT_THROW(balance_stages(flat, {{0, 0, 0, 0}}, {}), Error);
  EXPECT_THROW(balance_stages({{1}, {1}}), Error);
  EXPECT_THROW(balance_stages({{1, 2}, {1}}), Error);
}

TEST(AccelPipeline, ParameterCostsCountEachChild) {
  torch::nn::Sequential model(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2));
  const auto costs = parameter_costs(model, 2);
  ASSERT_EQ(costs.size(), 2u);
  EXPECT_EQ(costs[1], (std::vector<double>{40, 0, 18}));
}

TEST(AccelPipeline, ReportShowsEachStagesComputeAndTransfers) {
  torch::manual_seed(0);
  auto make = [] {
    torch::manual_seed(3);
    return torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::ReLU(),
                                 torch::nn::Linear(8, 8), torch::nn::ReLU(),
                                 torch::nn::Linear(8, 3));
  };
  auto reference = make();
  auto model = make();
  const auto x = torch::randn({4, 6});
  const auto expected = reference->forward(x);

  auto sim = std::make_shared<Simulator>();
  sim->configure(0, AcceleratorSpec::preset("nvdla"));
  sim->configure(1, AcceleratorSpec::preset("shidiannao"));
  // Children 0-1 on device 0, 2-4 on device 1, run one after the other (the pipeline's
  // executor does the same per micro-batch; here the report's view is what is tested).
  const std::vector<PipelineStage> stages{{0, 0, 2, {"0", "1"}, 56},
                                          {1, 2, 5, {"2", "3", "4"}, 99}};
  std::vector<torch::nn::Sequential> parts(2);
  const std::vector<torch::nn::AnyModule> children(model->begin(), model->end());
  for (size_t s = 0; s < 2; ++s) {
    for (int64_t l = stages[s].begin; l < stages[s].end; ++l)
      parts[s]->push_back(std::to_string(l), children[l]);
    to_device(parts[s], device(stages[s].device));
  }
  at::Tensor y;
  {
    RecorderScope scope(sim);
    y = x;
    for (size_t s = 0; s < 2; ++s) y = forward_by_layer(parts[s], y.to(device(stages[s].device)));
    y.sum().backward();
  }
  EXPECT_EQ(y.device(), device(1));
  EXPECT_TRUE(y.cpu().equal(expected));
  const CostReport r = sim->report();
  int transfers = 0;
  for (const auto& e : r.entries()) {
    if (e.layer == "(transfer)") {
      ++transfers;
      continue;
    }
    const bool first = e.layer == "0" || e.layer == "1";
    EXPECT_EQ(e.device, first ? 0 : 1) << e.op << " of layer " << e.layer;
  }
  // In: the input to device 0, the activation [4 x 8] to device 1; back: its gradient to
  // device 0 (the output's gradient is made on device 1).
  ASSERT_EQ(transfers, 3) << r.table();
  std::map<std::string, int64_t> bytes;
  for (const auto& e : r.entries())
    if (e.layer == "(transfer)") bytes[e.op] = e.cost.dram_writes * sim->spec(e.device).word_bytes;
  EXPECT_EQ(bytes.at("transfer cpu->0"), 4 * 6 * 4);
  EXPECT_EQ(bytes.at("transfer 0->1"), 4 * 8 * 4);
  EXPECT_EQ(bytes.at("transfer 1->0"), 4 * 8 * 4);

  const PipelineReport p = pipeline_report(r, stages);
  ASSERT_EQ(p.stages.size(), 2u);
  const auto per_device = r.per_device();
  double latency = 0, worst = 0, energy = 0;
  for (size_t s = 0; s < 2; ++s) {
    const StageCost& sc = p.stages[s];
    const CostTotal& dev = per_device.at(static_cast<int>(s));
    EXPECT_EQ(sc.compute.cost.cycles + sc.transfers.cost.cycles, dev.cost.cycles);
    EXPECT_EQ(sc.compute.calls + sc.transfers.calls, dev.calls);
    EXPECT_EQ(sc.transfers.calls, s == 0 ? 2 : 1);
    EXPECT_GT(sc.compute.cost.macs, 0);
    EXPECT_DOUBLE_EQ(sc.microseconds(),
                     dev.cost.microseconds(sim->spec(static_cast<int>(s)).clock_mhz));
    latency += sc.microseconds();
    worst = std::max(worst, sc.microseconds());
    energy += dev.cost.energy_pj();
  }
  EXPECT_EQ(p.stages[0].device_name, "nvdla");
  EXPECT_EQ(p.stages[1].device_name, "shidiannao");
  EXPECT_DOUBLE_EQ(p.latency_us, latency);
  EXPECT_DOUBLE_EQ(p.bottleneck_us, worst);
  EXPECT_DOUBLE_EQ(p.energy_pj, energy);
  EXPECT_EQ(p.to_json()["stages"].size(), 2u);
  EXPECT_NE(p.table().find("throughput bound"), std::string::npos);
}

TEST(AccelPipeline, CutCostsAreTheTransfersOfTheActivations) {
  torch::nn::Sequential model(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2));
  const auto bytes = layer_input_bytes(model, torch::randn({3, 4}));
  EXPECT_EQ(bytes, (std::vector<int64_t>{3 * 4 * 4, 3 * 8 * 4, 3 * 8 * 4}));
  const std::vector<AcceleratorSpec> specs{AcceleratorSpec::preset("nvdla"),
                                           AcceleratorSpec::preset("eyeriss")};
  const auto c = cut_microseconds(bytes, specs, true);
  ASSERT_EQ(c.enter.size(), 2u);
  ASSERT_EQ(c.leave.size(), 2u);
  EXPECT_EQ(c.enter[0][1], 0.0);  // nothing comes into the first stage from before it
  EXPECT_DOUBLE_EQ(c.enter[1][1],
                   transfer_cost(96, &specs[0], &specs[1]).microseconds(specs[1].clock_mhz));
  EXPECT_DOUBLE_EQ(c.leave[0][2],
                   transfer_cost(96, &specs[1], &specs[0]).microseconds(specs[0].clock_mhz));
  EXPECT_EQ(c.leave[1][2], 0.0);
  EXPECT_TRUE(cut_microseconds(bytes, specs, false).leave.empty());
}

TEST(AccelPipeline, LayerMicrosecondsFollowTheSpecs) {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(16, 32), torch::nn::ReLU(),
                              torch::nn::Linear(32, 4));
  const auto x = torch::randn({8, 16});
  const auto slow = AcceleratorSpec::preset("generic-32");
  auto fast = slow;
  fast.clock_mhz *= 2;  // the same cycles in half the time
  const auto us = layer_microseconds(model, {slow, fast}, [&](c10::Device d) {
    forward_by_layer(model, x.to(d)).sum().backward();
  });
  ASSERT_EQ(us.size(), 2u);
  ASSERT_EQ(us[0].size(), 3u);
  for (size_t l = 0; l < 3; ++l) {
    EXPECT_GT(us[0][l], 0) << l;
    EXPECT_DOUBLE_EQ(us[1][l] * 2, us[0][l]) << l;
  }
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

}  // namespace
}  // namespace strata::accel
