// Expert parallelism: with the experts spread over an expert-parallel group (and data
// parallelism over the rest), each rank's outputs and every parameter's gradient equal
// those of one process on the whole batch; a checkpoint saved with ep > 1 loads with ep = 1
// and resumes with ep > 1; the same inside pipeline stages (pp 2 x ep).
// Each body runs as InProcess<Suite> (2 and 4 threads) and Mpi<Suite> (the mpirun ranks).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>

#include "core/checkpoint_compare.h"
#include "core/test_util.h"
#include "parallel/comm_test_support.h"
#include "strata/core/checkpoint.h"
#include "strata/moe/expert_parallel.h"
#include "strata/moe/moe_layer.h"
#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/parallel/data/process_grid.h"

namespace {

using strata::moe::MoELayer;
using strata::moe::MoELayerOptions;
using strata::parallel::Communicator;
using strata::parallel::CommunicatorPtr;
using strata::parallel::ProcessGrid;
using strata::parallel::ProcessGridOptions;
using strata::test::checkpoint_optimizer_state;
using strata::test::optimizer_state;
using strata::test::tensor_differences;

constexpr int64_t kD = 8, kExperts = 4, kHidden = 16, kTokens = 48;  // 48: 1, 2, 3, 4 ranks
constexpr double kTolerance = 1e-5;

// pre (Linear) then moe: the router's input depends on a non-expert parameter too.
// Built under one lock from one seed: the in-process ranks are threads sharing torch's
// global generator.
torch::nn::Sequential build(const CommunicatorPtr& expert_group) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  torch::manual_seed(5);
  torch::nn::Sequential model;
  model->push_back("pre", torch::nn::Linear(kD, kD));
  // Auxiliary losses off: each rank's balance loss is over its own tokens, not the batch's.
  model->push_back("moe", MoELayer(MoELayerOptions(kD, kExperts, kHidden)
                                       .top_k(2)
                                       .balance_loss_coef(0)
                                       .z_loss_coef(0)
                                       .expert_group(expert_group)));
  torch::NoGradGuard no_grad;
  model[1]->as<strata::moe::MoELayerImpl>()->router->gate->weight.mul_(20);  // spread the load
  return model;
}

at::Tensor batch(uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({kTokens, kD}, gen);
}

at::Tensor loss_of(const at::Tensor& out, const at::Tensor& target) {
  return (out * target).sum(-1).mean();
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  EXPECT_LE((actual - expected).abs().max().item<double>(), kTolerance * scale) << what;
}

strata::moe::MoELayerImpl& moe_of(torch::nn::Sequential& model) {
  return *model[1]->as<strata::moe::MoELayerImpl>();
}

// The expected value of parameter `name` on this rank: an expert stack is its slice.
at::Tensor local_part(torch::nn::Sequential& model, const std::string& name, const at::Tensor& full,
                      const std::vector<std::string>& expert_names) {
  if (std::find(expert_names.begin(), expert_names.end(), name) == expert_names.end()) return full;
  return full.narrow(0, moe_of(model).first_expert(), moe_of(model).local_experts());
}

std::set<int> expert_sizes(int world_size) { return {2, world_size}; }

void check_matches_single_process(Communicator& comm) {
  const CommunicatorPtr world = comm.shared_from_this();
  const at::Tensor x = batch(1), target = batch(2);

  torch::nn::Sequential single = build(nullptr);
  const at::Tensor full_out = single->forward(x);
  loss_of(full_out, target).backward();

  for (int ep : expert_sizes(world->size())) {
    SCOPED_TRACE("ep " + std::to_string(ep) + " of " + std::to_string(world->size()));
    ProcessGrid grid(world, ProcessGridOptions().expert_parallel(ep));
    torch::nn::Sequential model = build(grid.expert_parallel());
    ASSERT_EQ(moe_of(model).local_experts(), kExperts / ep);
    const auto names = strata::moe::expert_parameter_names(*model);
    ASSERT_EQ(names.size(), 4u);
    strata::parallel::DistributedDataParallel ddp(
        model.ptr(), grid.data_parallel(),
        strata::parallel::DistributedDataParallelOptions()
            .expert_parameters(names)
            .expert_data_parallel_group(grid.expert_data_parallel()));
    const int dp = grid.data_parallel_size(), r = grid.data_parallel_rank();
    const at::Tensor out = model->forward(x.chunk(dp)[r]);
    loss_of(out, target.chunk(dp)[r]).backward();

    expect_close(out, full_out.chunk(dp)[r], "logits");
    EXPECT_EQ(moe_of(model).last_stats().dropped, 0);
    const auto expected = single->named_parameters();
    for (const auto& item : model->named_parameters()) {
      expect_close(item.value().grad(),
                   local_part(model, item.key(), expected[item.key()].grad(), names),
                   "gradient of " + item.key());
    }

    // The same through HybridParallel, whose expert parameters live in its pipeline
    // options (the one place of them): with pp 1 they must reach its data parallelism.
    torch::nn::Sequential hybrid_model = build(grid.expert_parallel());
    strata::parallel::HybridParallel hybrid(
        hybrid_model, grid, loss_of, x.chunk(dp)[r],
        strata::parallel::HybridParallelOptions().pipeline(
            strata::parallel::PipelineParallelOptions().expert_parameters(names)));
    torch::optim::SGD frozen(hybrid.parameters(), torch::optim::SGDOptions(0));
    hybrid.train_step(x.chunk(dp)[r], target.chunk(dp)[r], frozen);
    for (const auto& item : hybrid_model->named_parameters()) {
      expect_close(item.value().grad(),
                   local_part(hybrid_model, item.key(), expected[item.key()].grad(), names),
                   "HybridParallel gradient of " + item.key());
    }
  }
}
STRATA_COMM_TEST(ExpertParallel, LogitsAndGradientsEqualSingleProcess, check_matches_single_process)

// Every token picks experts 0 and 1, so with ep 2 the other rank's experts get no rows.
// That rank must still take part in the backward all-to-alls (it once skipped them and
// its group waited forever); its expert gradients are zero, as in one process.
void check_idle_experts(Communicator& comm) {
  const CommunicatorPtr world = comm.shared_from_this();
  const at::Tensor x = batch(9).abs(), target = batch(10);
  auto skew = [](torch::nn::Sequential& model) {
    torch::NoGradGuard no_grad;
    auto pre = model[0]->as<torch::nn::LinearImpl>();  // positive inputs reach the router
    pre->weight.copy_(at::eye(kD));
    pre->bias.zero_();
    at::Tensor gate = moe_of(model).router->gate->weight;
    gate.fill_(-1);
    gate[0].fill_(2);
    gate[1].fill_(1);
  };
  torch::nn::Sequential single = build(nullptr);
  skew(single);
  loss_of(single->forward(x), target).backward();

  ProcessGrid grid(world, ProcessGridOptions().expert_parallel(2));
  torch::nn::Sequential model = build(grid.expert_parallel());
  skew(model);
  const auto names = strata::moe::expert_parameter_names(*model);
  strata::parallel::DistributedDataParallel ddp(
      model.ptr(), grid.data_parallel(),
      strata::parallel::DistributedDataParallelOptions()
          .expert_parameters(names)
          .expert_data_parallel_group(grid.expert_data_parallel()));
  const int dp = grid.data_parallel_size(), r = grid.data_parallel_rank();
  loss_of(model->forward(x.chunk(dp)[r]), target.chunk(dp)[r]).backward();
  EXPECT_EQ(moe_of(model).last_stats().tokens_per_expert.slice(0, 2).sum().item<int64_t>(), 0);
  const auto expected = single->named_parameters();
  for (const auto& item : model->named_parameters()) {
    expect_close(item.value().grad(),
                 local_part(model, item.key(), expected[item.key()].grad(), names),
                 "gradient of " + item.key());
  }
}
STRATA_COMM_TEST(ExpertParallel, RankWhoseExpertsGetNoTokensStillRunsBackward, check_idle_experts)

// A directory name every rank agrees on: rank 0's pid, broadcast.
std::string shared_path(Communicator& world, const std::string& stem) {
  at::Tensor pid = at::full({1}, static_cast<int64_t>(::getpid()), at::kLong);
  world.broadcast(pid, 0)->wait();
  return (std::filesystem::temp_directory_path() /
          (stem + "-" + std::to_string(pid.item<int64_t>()) + "-" + std::to_string(world.size())))
      .string();
}

void check_checkpoint_loads_without_expert_parallelism(Communicator& comm) {
  const CommunicatorPtr world = comm.shared_from_this();
  const int ep = world->size();
  const std::string path = shared_path(comm, "strata-moe-ep-checkpoint");
  ProcessGrid grid(world, ProcessGridOptions().expert_parallel(ep));
  torch::nn::Sequential model = build(grid.expert_parallel());
  const auto names = strata::moe::expert_parameter_names(*model);
  const at::Tensor x = batch(3).chunk(ep)[grid.rank()], target = batch(4).chunk(ep)[grid.rank()];
  strata::parallel::HybridParallel parallel(
      model, grid, loss_of, x,
      strata::parallel::HybridParallelOptions().pipeline(
          strata::parallel::PipelineParallelOptions().expert_parameters(names)));
  torch::optim::AdamW adamw(parallel.parameters(), torch::optim::AdamWOptions(1e-2));
  parallel.train_step(x, target, adamw);
  parallel.save_checkpoint(path, adamw, 1);

  // Saved whole: one process with every expert loads it exactly, optimizer state too
  // (every parameter's AdamW moments and step, as saved).
  torch::nn::Sequential single = build(nullptr);
  torch::optim::AdamW single_adamw(single->parameters(), torch::optim::AdamWOptions(1e-2));
  EXPECT_EQ(strata::core::load_checkpoint(path, *single, &single_adamw), 1);
  EXPECT_THAT(tensor_differences(checkpoint_optimizer_state(path, *single),
                                 optimizer_state(*single, single_adamw)),
              testing::IsEmpty())
      << "optimizer state loaded with ep 1";
  const auto loaded = single->named_parameters();
  for (const auto& item : model->named_parameters()) {
    expect_close(item.value(), local_part(model, item.key(), loaded[item.key()], names),
                 "loaded " + item.key());
  }
  // The loaded experts are the trained ones, not the initial ones.
  EXPECT_GT((loaded["moe.w_in"] - build(nullptr)->named_parameters()["moe.w_in"])
                .abs()
                .max()
                .item<double>(),
            1e-4);

  // Resumed with the same ep, each rank takes its slice back, optimizer state included.
  torch::nn::Sequential resumed = build(grid.expert_parallel());
  strata::parallel::HybridParallel resumed_parallel(
      resumed, grid, loss_of, x,
      strata::parallel::HybridParallelOptions().pipeline(
          strata::parallel::PipelineParallelOptions().expert_parameters(names)));
  torch::optim::AdamW resumed_adamw(resumed_parallel.parameters(),
                                    torch::optim::AdamWOptions(1e-2));
  EXPECT_THROW(resumed_parallel.load_checkpoint(path + "-missing", resumed_adamw), strata::Error);
  EXPECT_EQ(moe_of(resumed).w_in.size(0), kExperts / ep);  // a failed load changes nothing
  EXPECT_EQ(resumed_parallel.load_checkpoint(path, resumed_adamw), 1);
  strata::test::TensorsByName saved_slices = checkpoint_optimizer_state(path, *resumed);
  for (auto& [key, tensor] : saved_slices) {
    // "optimizer/<parameter>/<field>"; a moment of an expert stack is sliced like it.
    const size_t begin = key.find('/') + 1;
    if (tensor.dim() > 0)
      tensor = local_part(resumed, key.substr(begin, key.rfind('/') - begin), tensor, names);
  }
  EXPECT_THAT(tensor_differences(saved_slices, optimizer_state(*resumed, resumed_adamw)),
              testing::IsEmpty())
      << "optimizer state loaded with ep " << ep << " on rank " << grid.rank();

  // Three more steps from the live state, from the state resumed with the same ep, and in
  // the one process from the state it loaded (on the whole batch): the same losses and
  // parameters. With Adam's moments lost, the second and third steps would differ.
  for (int k = 0; k < 3; ++k) {
    const at::Tensor gx = batch(5 + 2 * k), gtarget = batch(6 + 2 * k);
    const at::Tensor rx = gx.chunk(ep)[grid.rank()], rtarget = gtarget.chunk(ep)[grid.rank()];
    const double live = parallel.mean_over_replicas(parallel.train_step(rx, rtarget, adamw));
    const double again = resumed_parallel.mean_over_replicas(
        resumed_parallel.train_step(rx, rtarget, resumed_adamw));
    single_adamw.zero_grad();
    const at::Tensor whole = loss_of(single->forward(gx), gtarget);
    whole.backward();
    single_adamw.step();
    const double tolerance = kTolerance * std::max(1.0, std::abs(live));
    EXPECT_NEAR(again, live, tolerance) << "step " << 2 + k << " resumed with ep " << ep;
    EXPECT_NEAR(whole.item<double>(), live, tolerance) << "step " << 2 + k << " with ep 1";
  }
  const auto resumed_params = resumed->named_parameters();
  const auto single_params = single->named_parameters();
  for (const auto& item : model->named_parameters()) {
    expect_close(resumed_params[item.key()], item.value(), "resumed " + item.key());
    expect_close(local_part(model, item.key(), single_params[item.key()], names), item.value(),
                 "ep 1 " + item.key());
  }
  world->barrier()->wait();
  if (world->rank() == 0) std::filesystem::remove_all(path);
}
STRATA_COMM_TEST(ExpertParallel, CheckpointSavedWithEpLoadsWithoutIt,
                 check_checkpoint_loads_without_expert_parallelism)

// pre, moe, mid, moe2: with two pipeline stages each stage holds one MoE layer.
torch::nn::Sequential build_deep(const CommunicatorPtr& expert_group) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  torch::manual_seed(7);
  torch::nn::Sequential model;
  auto moe = [&] {
    MoELayer layer(MoELayerOptions(kD, kExperts, kHidden)
                       .top_k(2)
                       .balance_loss_coef(0)
                       .z_loss_coef(0)
                       .expert_group(expert_group));
    torch::NoGradGuard no_grad;
    layer->router->gate->weight.mul_(20);
    return layer;
  };
  model->push_back("pre", torch::nn::Linear(kD, kD));
  model->push_back("moe", moe());
  model->push_back("mid", torch::nn::Linear(kD, kD));
  model->push_back("moe2", moe());
  return model;
}

// Expert parallelism inside pipeline stages: pp 2 with the experts of each stage spread
// over that stage's replicas (ep = dp). The loss, every gradient after a step and a
// checkpoint equal one process's; the checkpoint resumes with the same layout.
void check_pipeline_with_expert_parallelism(Communicator& comm) {
  const CommunicatorPtr world = comm.shared_from_this();
  const int dp = world->size() / 2, ep = dp;
  const at::Tensor x = batch(7), target = batch(8);

  torch::nn::Sequential single = build_deep(nullptr);
  const at::Tensor full_loss = loss_of(single->forward(x), target);
  full_loss.backward();

  ProcessGrid grid(world, ProcessGridOptions().pipeline_parallel(2).expert_parallel(ep));
  torch::nn::Sequential model = build_deep(grid.expert_parallel());
  const auto names = strata::moe::expert_parameter_names(*model);
  ASSERT_EQ(names.size(), ep > 1 ? 8u : 0u);
  const int r = grid.data_parallel_rank();
  const at::Tensor rx = x.chunk(dp)[r], rtarget = target.chunk(dp)[r];
  auto options = [&] {
    return strata::parallel::HybridParallelOptions().pipeline_parallel(2).pipeline(
        strata::parallel::PipelineParallelOptions()
            .micro_batches(2)
            .balance("2,2")
            .expert_parameters(names));
  };
  strata::parallel::HybridParallel parallel(model, grid, loss_of, rx, options());
  // SGD with lr 0 keeps the parameters, so the gradients can be compared after the step.
  torch::optim::SGD frozen(parallel.parameters(), torch::optim::SGDOptions(0));
  const double loss = parallel.mean_over_replicas(parallel.train_step(rx, rtarget, frozen));
  EXPECT_NEAR(loss, full_loss.item<double>(), kTolerance * std::max(1.0, std::abs(loss)));

  const auto expected = single->named_parameters();
  const auto local = parallel.pipeline()->local_module().named_parameters();
  ASSERT_GT(local.size(), 0u);
  for (const auto& item : local) {
    const std::string& name = item.key();
    at::Tensor full = expected[name].grad();
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      const int64_t rows = full.size(0) / ep;
      full = full.narrow(0, grid.expert_parallel_rank() * rows, rows);
    }
    expect_close(item.value().grad(), full, "gradient of " + name);
  }

  // Train a step, save with pp 2 x ep, load in one process: the whole expert stacks.
  const std::string path = shared_path(comm, "strata-moe-pp-ep-checkpoint");
  torch::optim::AdamW adamw(parallel.parameters(), torch::optim::AdamWOptions(1e-2));
  parallel.train_step(rx, rtarget, adamw);
  parallel.save_checkpoint(path, adamw, 1);
  torch::nn::Sequential loaded = build_deep(nullptr);
  torch::optim::AdamW loaded_adamw(loaded->parameters(), torch::optim::AdamWOptions(1e-2));
  EXPECT_EQ(strata::core::load_checkpoint(path, *loaded, &loaded_adamw), 1);
  EXPECT_THAT(tensor_differences(checkpoint_optimizer_state(path, *loaded),
                                 optimizer_state(*loaded, loaded_adamw)),
              testing::IsEmpty())
      << "optimizer state of a pp 2 x ep " << ep << " checkpoint loaded in one process";
  const auto whole = loaded->named_parameters();
  for (const auto& item : local) {
    at::Tensor full = whole[item.key()];
    if (std::find(names.begin(), names.end(), item.key()) != names.end()) {
      const int64_t rows = full.size(0) / ep;
      full = full.narrow(0, grid.expert_parallel_rank() * rows, rows);
    }
    expect_close(item.value(), full, "saved " + item.key());
  }

  // Resumed with the same layout, three further steps equal the live run's (the second
  // and third only with the AdamW moments restored).
  torch::nn::Sequential resumed = build_deep(grid.expert_parallel());
  strata::parallel::HybridParallel resumed_parallel(resumed, grid, loss_of, rx, options());
  torch::optim::AdamW resumed_adamw(resumed_parallel.parameters(),
                                    torch::optim::AdamWOptions(1e-2));
  EXPECT_EQ(resumed_parallel.load_checkpoint(path, resumed_adamw), 1);
  for (int k = 0; k < 3; ++k) {
    const double live = parallel.mean_over_replicas(parallel.train_step(rx, rtarget, adamw));
    const double again = resumed_parallel.mean_over_replicas(
        resumed_parallel.train_step(rx, rtarget, resumed_adamw));
    EXPECT_NEAR(again, live, kTolerance * std::max(1.0, std::abs(live))) << "step " << 2 + k;
  }
  const auto resumed_params = resumed_parallel.pipeline()->local_module().named_parameters();
  for (const auto& item : local)
    expect_close(resumed_params[item.key()], item.value(), "resumed " + item.key());
  world->barrier()->wait();
  if (world->rank() == 0) std::filesystem::remove_all(path);
}
STRATA_COMM_TEST(ExpertParallel, InsidePipelineStagesEqualsSingleProcess,
                 check_pipeline_with_expert_parallelism)

void check_bad_expert_parallel_size(Communicator& comm) {
  const CommunicatorPtr world = comm.shared_from_this();
  EXPECT_NE(strata::test::error_of([&] {
              ProcessGrid(world, ProcessGridOptions().expert_parallel(3));
            }).find("expert-parallel size 3, expected a divisor of the data-parallel size"),
            std::string::npos);
  ProcessGrid grid(world, ProcessGridOptions().expert_parallel(2));
  EXPECT_NE(strata::test::error_of([&] {
              MoELayer(MoELayerOptions(kD, 5, kHidden).expert_group(grid.expert_parallel()));
            }).find("experts 5 are not divisible by the expert-parallel size 2"),
            std::string::npos);
}
STRATA_COMM_TEST(ExpertParallel, BadSizesFailClearly, check_bad_expert_parallel_size)

}  // namespace
