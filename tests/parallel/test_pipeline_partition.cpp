// The pipeline partitioner: every strategy's split is optimal (against brute force over all
// contiguous splits of small random models), the memory limit holds, impossible requests
// are clear errors, and split_sequential / profile_layers work on the fmnist MLP.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "comm_test_support.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/parallel/pipeline/partition.h"

namespace strata::parallel::testing {
namespace {

// ---- An independent reference: every contiguous split, costs summed directly. ----

// Every way to cut n layers into k non-empty stages, as layers per stage.
void for_each_balance(int64_t n, int64_t k,
                      const std::function<void(const std::vector<int64_t>&)>& f,
                      std::vector<int64_t>& prefix) {
  if (k == 1) {
    prefix.push_back(n);
    f(prefix);
    prefix.pop_back();
    return;
  }
  for (int64_t first = 1; first <= n - (k - 1); ++first) {
    prefix.push_back(first);
    for_each_balance(n - first, k - 1, f, prefix);
    prefix.pop_back();
  }
}

std::vector<std::vector<int64_t>> all_balances(int64_t n, int64_t k) {
  std::vector<std::vector<int64_t>> all;
  std::vector<int64_t> prefix;
  for_each_balance(
      n, k, [&](const std::vector<int64_t>& b) { all.push_back(b); }, prefix);
  return all;
}

int64_t reference_memory(const std::vector<LayerProfile>& layers, int64_t b, int64_t e, int64_t s,
                         const MemoryModel& m) {
  int64_t parameter_bytes = 0, activation_bytes = 0;
  for (int64_t i = b; i < e; ++i) {
    parameter_bytes += layers[i].parameter_bytes;
    activation_bytes += layers[i].activation_bytes;
  }
  const int64_t held = m.in_flight().empty() ? 1 : m.in_flight()[s];
  return std::llround(parameter_bytes * (2 + m.optimizer_state_factor())) + activation_bytes * held;
}

double reference_cost(const std::vector<LayerProfile>& layers, int64_t b, int64_t e, int64_t s,
                      BalanceBy by, const MemoryModel& m) {
  if (by == BalanceBy::Memory) return static_cast<double>(reference_memory(layers, b, e, s, m));
  double sum = 0;
  for (int64_t i = b; i < e; ++i)
    sum += by == BalanceBy::Parameters ? static_cast<double>(layers[i].parameters) : layers[i].time;
  return sum;
}

// The largest stage cost of a split; infinity if a stage is over `limit` (when given).
double objective(const std::vector<LayerProfile>& layers, const std::vector<int64_t>& balance,
                 BalanceBy by, const MemoryModel& m, int64_t limit = 0) {
  double worst = 0;
  int64_t b = 0;
  for (size_t s = 0; s < balance.size(); ++s) {
    const int64_t e = b + balance[s];
    if (limit > 0 && reference_memory(layers, b, e, s, m) > limit)
      return std::numeric_limits<double>::infinity();
    worst = std::max(worst, reference_cost(layers, b, e, s, by, m));
    b = e;
  }
  return worst;
}

// The partition covers the layers in order with non-empty stages, and its per-stage
// figures are the reference's.
void expect_valid(const PipelinePartition& p, const std::vector<LayerProfile>& layers, int64_t k,
                  const MemoryModel& m) {
  ASSERT_EQ(static_cast<int64_t>(p.stages.size()), k);
  int64_t next = 0;
  for (size_t s = 0; s < p.stages.size(); ++s) {
    const StagePlan& st = p.stages[s];
    EXPECT_EQ(st.begin, next);
    EXPECT_GT(st.end, st.begin);
    EXPECT_EQ(static_cast<int64_t>(st.layer_names.size()), st.end - st.begin);
    EXPECT_EQ(st.memory_bytes, reference_memory(layers, st.begin, st.end, s, m));
    EXPECT_NEAR(st.time, reference_cost(layers, st.begin, st.end, s, BalanceBy::Time, m), 1e-9);
    EXPECT_EQ(st.parameters, static_cast<int64_t>(reference_cost(layers, st.begin, st.end, s,
                                                                 BalanceBy::Parameters, m)));
    next = st.end;
  }
  EXPECT_EQ(next, static_cast<int64_t>(layers.size()));
}

// Small random models. Costs come from few distinct values so that ties are common.
struct RandomCase {
  std::vector<LayerProfile> layers;
  int stages;
  MemoryModel memory;
};

RandomCase random_case(std::mt19937& rng) {
  std::uniform_int_distribution<int> n_dist(1, 8), small(0, 6), pick(0, 2);
  std::uniform_real_distribution<double> time(0.0, 1.0);
  RandomCase c;
  const int n = n_dist(rng);
  for (int i = 0; i < n; ++i) {
    LayerProfile l;
    l.name = "l" + std::to_string(i);
    l.parameters = small(rng) * 1000;
    l.parameter_bytes = l.parameters * 4;
    // Half the cases use integer times, which tie; the rest arbitrary doubles.
    l.time = pick(rng) == 0 ? time(rng) : static_cast<double>(small(rng));
    l.activation_bytes = small(rng) * 3000;
    c.layers.push_back(l);
  }
  c.stages = std::uniform_int_distribution<int>(1, std::min(n, 4))(rng);
  const int micro_batches = std::uniform_int_distribution<int>(1, 8)(rng);
  switch (pick(rng)) {
    case 0: break;  // 1 per stage
    case 1: c.memory.in_flight(gpipe_in_flight(c.stages, micro_batches)); break;
    default: c.memory.in_flight(one_f_one_b_in_flight(c.stages, micro_batches)); break;
  }
  c.memory.optimizer_state_factor(pick(rng));
  return c;
}

std::vector<LayerProfile> layers_with_times(const std::vector<double>& times) {
  std::vector<LayerProfile> layers;
  for (size_t i = 0; i < times.size(); ++i) {
    LayerProfile l;
    l.name = "layer" + std::to_string(i);
    l.time = times[i];
    layers.push_back(l);
  }
  return layers;
}

}  // namespace

TEST(PipelinePartitionBalanced, EqualsBruteForceOnRandomModels) {
  std::mt19937 rng(20261129);
  for (int trial = 0; trial < 400; ++trial) {
    const RandomCase c = random_case(rng);
    for (BalanceBy by : {BalanceBy::Parameters, BalanceBy::Time, BalanceBy::Memory}) {
      SCOPED_TRACE(::testing::Message()
                   << "trial " << trial << ", criterion " << static_cast<int>(by) << ", "
                   << c.layers.size() << " layers, " << c.stages << " stages");
      double best = std::numeric_limits<double>::infinity();
      for (const auto& b : all_balances(c.layers.size(), c.stages))
        best = std::min(best, objective(c.layers, b, by, c.memory));
      const PipelinePartition p = partition_balanced(c.layers, c.stages, by, c.memory);
      expect_valid(p, c.layers, c.stages, c.memory);
      EXPECT_NEAR(objective(c.layers, p.balance(), by, c.memory), best, 1e-9);
      // The same input gives the same split.
      EXPECT_EQ(partition_balanced(c.layers, c.stages, by, c.memory).balance(), p.balance());
    }
  }
}

// The busiest rank's total when rank r runs stages r, r + ranks, ...
double busiest_rank(const std::vector<LayerProfile>& layers, const std::vector<int64_t>& balance,
                    int ranks, BalanceBy by) {
  std::vector<double> per_rank(ranks, 0);
  int64_t b = 0;
  for (size_t s = 0; s < balance.size(); ++s) {
    per_rank[s % ranks] += reference_cost(layers, b, b + balance[s], s, by, MemoryModel());
    b += balance[s];
  }
  return *std::max_element(per_rank.begin(), per_rank.end());
}

TEST(PipelinePartitionRankBalanced, EqualsBruteForceOnRandomModels) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    RandomCase c = random_case(rng);
    const int ranks = 2;
    const int stages = 4;
    if (static_cast<int>(c.layers.size()) < stages) continue;
    for (BalanceBy by : {BalanceBy::Parameters, BalanceBy::Time}) {
      SCOPED_TRACE(::testing::Message()
                   << "trial " << trial << ", " << c.layers.size() << " layers");
      double best = std::numeric_limits<double>::infinity();
      for (const auto& b : all_balances(c.layers.size(), stages))
        best = std::min(best, busiest_rank(c.layers, b, ranks, by));
      const PipelinePartition p = partition_rank_balanced(c.layers, stages, ranks, by);
      expect_valid(p, c.layers, stages, MemoryModel());
      EXPECT_NEAR(busiest_rank(c.layers, p.balance(), ranks, by), best, 1e-9);
    }
  }
}

// fmnist-mlp's layers by parameters, 4 stages on 2 ranks: balancing stages leaves rank 0
// with about twice rank 1's parameters; balancing ranks evens them out.
TEST(PipelinePartitionRankBalanced, EvensOutTheRanksOfAnInterleavedMlp) {
  std::vector<LayerProfile> layers = {
      {"flatten", "Flatten", 0}, {"fc0", "Linear", 803840}, {"relu0", "ReLU", 0}};
  for (int i = 1; i <= 5; ++i) {
    layers.push_back({"fc" + std::to_string(i), "Linear", 1049600});
    layers.push_back({"relu" + std::to_string(i), "ReLU", 0});
  }
  layers.push_back({"out", "Linear", 10250});
  const auto by_stage = partition_balanced(layers, 4, BalanceBy::Parameters).balance();
  const auto by_rank = partition_rank_balanced(layers, 4, 2, BalanceBy::Parameters).balance();
  EXPECT_GT(busiest_rank(layers, by_stage, 2, BalanceBy::Parameters), 3.5e6);
  EXPECT_LT(busiest_rank(layers, by_rank, 2, BalanceBy::Parameters), 3.2e6);
  // One stage per rank: the stage-balanced split.
  EXPECT_EQ(partition_rank_balanced(layers, 4, 4, BalanceBy::Parameters).balance(), by_stage);
  // Too many splits to try (C(59, 15)): the stage-balanced split.
  std::vector<LayerProfile> many(60, LayerProfile{"l", "Linear", 10});
  EXPECT_EQ(partition_rank_balanced(many, 16, 2, BalanceBy::Parameters).balance(),
            partition_balanced(many, 16, BalanceBy::Parameters).balance());
  expect_error([&] { partition_rank_balanced(layers, 4, 3, BalanceBy::Parameters); },
               "4 stages on 3 ranks, expected a whole number of stages per rank");
  expect_error([&] { partition_rank_balanced(layers, 4, 2, BalanceBy::Memory); },
               "by parameters or time, not memory");
}

TEST(PipelinePartitionJoint, EqualsBruteForceUnderTheLimit) {
  std::mt19937 rng(7);
  int feasible = 0, infeasible = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const RandomCase c = random_case(rng);
    // The smallest limit any split fits, and the largest any split needs: limits between
    // them exercise both the constraint and the error.
    double lowest = std::numeric_limits<double>::infinity(), highest = 0;
    for (const auto& b : all_balances(c.layers.size(), c.stages)) {
      const double m = objective(c.layers, b, BalanceBy::Memory, c.memory);
      lowest = std::min(lowest, m);
      highest = std::max(highest, m);
    }
    const auto needed = static_cast<int64_t>(lowest);
    const int64_t limit = std::max<int64_t>(
        1,
        std::uniform_int_distribution<int64_t>(needed * 3 / 4, static_cast<int64_t>(highest))(rng));
    SCOPED_TRACE(::testing::Message() << "trial " << trial << ", limit " << limit << ", "
                                      << c.layers.size() << " layers, " << c.stages << " stages");
    if (limit < needed) {
      ++infeasible;
      expect_error([&] { partition_joint(c.layers, c.stages, limit, c.memory); },
                   "the best split needs " + format_megabytes(needed) + " (" +
                       std::to_string(needed) + " bytes)");
      continue;
    }
    ++feasible;
    double best = std::numeric_limits<double>::infinity();
    for (const auto& b : all_balances(c.layers.size(), c.stages))
      best = std::min(best, objective(c.layers, b, BalanceBy::Time, c.memory, limit));
    const PipelinePartition p = partition_joint(c.layers, c.stages, limit, c.memory);
    expect_valid(p, c.layers, c.stages, c.memory);
    for (const StagePlan& s : p.stages) EXPECT_LE(s.memory_bytes, limit);
    EXPECT_EQ(p.memory_limit_bytes, limit);
    EXPECT_NEAR(objective(c.layers, p.balance(), BalanceBy::Time, c.memory, limit), best, 1e-9);
  }
  EXPECT_GT(feasible, 100);
  EXPECT_GT(infeasible, 10);
}

// Known costs: by time alone the heavy last layer gets a stage of its own; a memory limit
// that the last layer's activations break forces its neighbour to join it instead.
TEST(PipelinePartitionJoint, MemoryLimitMovesTheCut) {
  std::vector<LayerProfile> layers = layers_with_times({1, 1, 1, 1, 4});
  for (auto& l : layers) l.activation_bytes = 1'000'000;
  EXPECT_EQ(partition_balanced(layers, 2, BalanceBy::Time).balance(), (std::vector<int64_t>{4, 1}));
  // GPipe with 4 micro-batches: a stage of j layers holds 4 MB per layer.
  const MemoryModel gpipe = MemoryModel().in_flight(gpipe_in_flight(2, 4));
  const PipelinePartition p = partition_joint(layers, 2, 12'000'000, gpipe);
  EXPECT_EQ(p.balance(), (std::vector<int64_t>{3, 2}));
  EXPECT_DOUBLE_EQ(p.stages[1].time, 5.0);
  EXPECT_EQ(p.stages[0].memory_bytes, 12'000'000);
  // 1F1B holds 2 micro-batches on stage 0 and 1 on stage 1: the time-optimal split fits.
  const MemoryModel f1b1 = MemoryModel().in_flight(one_f_one_b_in_flight(2, 4));
  EXPECT_EQ(partition_joint(layers, 2, 8'000'000, f1b1).balance(), (std::vector<int64_t>{4, 1}));
}

TEST(PipelinePartitionJoint, TooSmallLimitNamesTheNeededSize) {
  std::vector<LayerProfile> layers = layers_with_times({1, 1, 1, 1, 1, 1, 1, 1});
  for (auto& l : layers) l.activation_bytes = 3'550'000;
  // Best split: 4 + 4 layers, 14.2 MB each.
  expect_error([&] { partition_joint(layers, 2, 10'000'000); },
               "no split of 8 layers into 2 stages fits 10.0 MB (10000000 bytes) per stage; "
               "the best split needs 14.2 MB (14200000 bytes)");
}

TEST(PipelinePartitionInFlight, GPipeHoldsAllOneFOneBHoldsKMinusS) {
  EXPECT_EQ(gpipe_in_flight(3, 8), (std::vector<int64_t>{8, 8, 8}));
  EXPECT_EQ(one_f_one_b_in_flight(4, 8), (std::vector<int64_t>{4, 3, 2, 1}));
  EXPECT_EQ(one_f_one_b_in_flight(4, 2), (std::vector<int64_t>{2, 2, 2, 1}));
  expect_error([] { gpipe_in_flight(2, 0); }, "micro-batches: got 0, expected at least 1");
}

TEST(PipelinePartitionExplicit, RoundTripsBalance) {
  const std::vector<LayerProfile> layers = layers_with_times({1, 2, 3, 4, 5, 6});
  for (const auto& balance : all_balances(6, 3)) {
    const PipelinePartition p = partition_explicit(layers, balance);
    EXPECT_EQ(p.balance(), balance);
    expect_valid(p, layers, 3, MemoryModel());
  }
}

TEST(PipelinePartitionErrors, ImpossibleRequestsAreClear) {
  const std::vector<LayerProfile> three = layers_with_times({1, 1, 1});
  expect_error([&] { partition_balanced(three, 4, BalanceBy::Time); },
               "cannot split 3 layers into 4 stages");
  expect_error([&] { partition_joint(three, 4, 1000); }, "cannot split 3 layers into 4 stages");
  expect_error([&] { partition_balanced(three, 0, BalanceBy::Time); },
               "pipeline stages: got 0, expected at least 1");
  expect_error([&] { partition_balanced({}, 1, BalanceBy::Time); },
               "cannot partition an empty model: got 0 layers");
  expect_error(
      [&] {
        partition_explicit(three, {1, 1});
      },
      "pipeline balance: got 2 layers in all, expected 3");
  expect_error(
      [&] {
        partition_explicit(three, {2, 0, 1});
      },
      "pipeline balance[1]: got 0 layers, expected at least 1");
  expect_error(
      [&] {
        partition_explicit(three, {1, 1, 1, 1});
      },
      "cannot split 3 layers into 4 stages");
  expect_error([&] { partition_joint(three, 1, 0); },
               "per-stage memory limit: got 0 bytes, expected more than 0");
  expect_error(
      [&] { partition_balanced(three, 2, BalanceBy::Memory, MemoryModel().in_flight({1})); },
      "memory model in_flight: got counts for 1 stages, expected 2");
  std::vector<LayerProfile> negative = three;
  negative[1].time = -1;
  expect_error([&] { partition_balanced(negative, 2, BalanceBy::Time); },
               "layer 1 ('layer1') time: got -1, expected a finite value >= 0");
  negative = three;
  negative[2].activation_bytes = -5;
  expect_error([&] { partition_balanced(negative, 2, BalanceBy::Parameters); },
               "layer 2 ('layer2') activation_bytes: got -5, expected >= 0");
}

TEST(PipelinePartitionSplit, StagesChainToTheModelAndShareItsParameters) {
  torch::manual_seed(0);
  torch::nn::Sequential model = strata::core::make_fmnist_mlp();
  const at::Tensor x = torch::randn({5, 1, 28, 28});
  const at::Tensor expected = model->forward(x);
  std::vector<LayerProfile> layers(model->size());
  for (size_t i = 0; i < layers.size(); ++i) layers[i].name = std::to_string(i);
  for (const auto& balance :
       {std::vector<int64_t>{14}, std::vector<int64_t>{7, 7}, std::vector<int64_t>{1, 4, 6, 3}}) {
    const auto stages = split_sequential(model, partition_explicit(layers, balance));
    ASSERT_EQ(stages.size(), balance.size());
    at::Tensor y = x;
    std::vector<std::pair<std::string, at::Tensor>> parameters;
    for (auto stage : stages) {
      y = stage->forward(y);
      for (const auto& p : stage->named_parameters()) parameters.emplace_back(p.key(), p.value());
    }
    EXPECT_TRUE(torch::equal(y, expected));
    // The same tensors under the same names, in the model's order.
    const auto original = model->named_parameters();
    ASSERT_EQ(parameters.size(), original.size());
    for (size_t i = 0; i < parameters.size(); ++i) {
      EXPECT_EQ(parameters[i].first, original[i].key());
      EXPECT_TRUE(parameters[i].second.is_same(original[i].value()));
    }
  }
  expect_error(
      [&] {
        split_sequential(model, partition_explicit(layers_with_times({1, 1}), {1, 1}));
      },
      "partition layers: got 2, expected 14");
}

TEST(PipelinePartitionProfile, FmnistMlpLayers) {
  torch::manual_seed(0);
  torch::nn::Sequential model = strata::core::make_fmnist_mlp();
  const int64_t batch = 8;
  const auto layers = profile_layers(model, torch::randn({batch, 1, 28, 28}), 2);
  ASSERT_EQ(layers.size(), 14u);
  EXPECT_EQ(layers[0].type, "Flatten");
  EXPECT_EQ(layers[1].type, "Linear");
  EXPECT_EQ(layers[2].type, "ReLU");
  EXPECT_EQ(layers[13].type, "Linear");
  EXPECT_EQ(layers[0].name, "0");
  EXPECT_EQ(layers[1].parameters, 784 * 1024 + 1024);
  EXPECT_EQ(layers[1].parameter_bytes, (784 * 1024 + 1024) * 4);
  EXPECT_EQ(layers[3].parameters, 1024 * 1024 + 1024);
  EXPECT_EQ(layers[13].parameters, 1024 * 10 + 10);
  EXPECT_EQ(layers[2].parameters, 0);
  // Flatten's output is a view of its input; a Linear keeps its input and output; ReLU its
  // output.
  EXPECT_EQ(layers[0].activation_bytes, 0);
  EXPECT_EQ(layers[1].activation_bytes, batch * (784 + 1024) * 4);
  EXPECT_EQ(layers[2].activation_bytes, batch * 1024 * 4);
  EXPECT_EQ(layers[3].activation_bytes, batch * (1024 + 1024) * 4);
  EXPECT_EQ(layers[13].activation_bytes, batch * (1024 + 10) * 4);
  for (const auto& l : layers)
    if (l.type == "Linear") {
      EXPECT_GT(l.time, 0) << "layer " << l.name;
    }
  // Profiling leaves the gradients as they were: none.
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

// In-place layers overwrite their input: profiling must not trip autograd's leaf check,
// and the in-place result keeps nothing new alive.
TEST(PipelinePartitionProfile, InPlaceLayers) {
  torch::nn::Sequential model(torch::nn::Linear(6, 5),
                              torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)),
                              torch::nn::Linear(5, 3));
  const auto layers = profile_layers(model, torch::randn({4, 6}), 1);
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[1].activation_bytes, 0);
  EXPECT_EQ(layers[2].activation_bytes, 4 * (5 + 3) * 4);
}

TEST(PipelinePartitionDescribe, MentionsEachStage) {
  std::vector<LayerProfile> layers = layers_with_times({0.001, 0.002, 0.003, 0.004});
  for (auto& l : layers) l.parameters = 10;
  const PipelinePartition p = partition_balanced(layers, 3, BalanceBy::Time);
  const std::string text = p.describe();
  EXPECT_NE(text.find("4 layers into 3 stages"), std::string::npos) << text;
  for (const StagePlan& s : p.stages) {
    const std::string first = s.layer_names.front();
    EXPECT_NE(text.find(first), std::string::npos) << text;
  }
  EXPECT_NE(text.find("\n0 "), std::string::npos) << text;
  EXPECT_NE(text.find("\n1 "), std::string::npos) << text;
  EXPECT_NE(text.find("\n2 "), std::string::npos) << text;
  EXPECT_NE(text.find("slowest stage: " + std::to_string(p.slowest_stage())), std::string::npos)
      << text;
}

}  // namespace strata::parallel::testing
