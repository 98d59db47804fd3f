// Adaptive balance (PipelineParallel::rebalance, repartition, PipelineParallelOptions::
// adaptive): a pipeline started on a bad split moves its layers, with their parameters and
// optimizer state, to the split the dynamic program makes from the costs, in place, and
// trains on exactly as if it had started there: the same losses, bit for bit, and the same
// parameters and SGD momentum or Adam moments afterwards.
#include <torch/torch.h>

#include <gmock/gmock.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "comm_test_support.h"
#include "core/checkpoint_compare.h"
#include "core/test_util.h"
#include "strata/core/error.h"
#include "strata/core/layer_partition.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"

namespace strata::parallel::testing {
namespace {

// A Linear and a tanh that also sleeps `ms` in its forward: a layer whose cost the test sets, far
// above the arithmetic's and the machine's noise, so that the best split is certain.
class SlowLinearImpl : public torch::nn::Module {
 public:
  explicit SlowLinearImpl(int ms) : ms_(ms) {
    linear_ = register_module("linear", torch::nn::Linear(8, 8));
  }
  at::Tensor forward(const at::Tensor& x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms_));
    return torch::tanh(linear_->forward(x));
  }

 private:
  int ms_;
  torch::nn::Linear linear_{nullptr};
};
TORCH_MODULE(SlowLinear);

// 8 layers sleeping `ms[i]` each, the same weights every time it is built.
torch::nn::Sequential make_model(const std::vector<int>& ms) {
  torch::nn::Sequential model;
  for (int t : ms) model->push_back(SlowLinear(t));
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.4);
  return model;
}

at::Tensor squared_error(const at::Tensor& out, const at::Tensor& target) {
  return (out - target).pow(2).mean();
}

struct Batch {
  at::Tensor inputs, targets;
};
// Replica `index` of `replicas`' share of step `step`'s global batch of 16 rows.
Batch batch_of(int64_t step, int index, int replicas) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + step);
  const at::Tensor inputs = at::randn({16, 8}, gen), targets = at::randn({16, 8}, gen);
  return {inputs.chunk(replicas)[index], targets.chunk(replicas)[index]};
}

enum class Optim { SgdMomentum, Adam };

std::unique_ptr<torch::optim::Optimizer> make_optimizer(Optim kind, PipelineParallel& pipe) {
  if (kind == Optim::Adam)
    return std::make_unique<torch::optim::Adam>(pipe.parameters(), torch::optim::AdamOptions(0.01));
  return std::make_unique<torch::optim::SGD>(pipe.parameters(),
                                             torch::optim::SGDOptions(0.01).momentum(0.9));
}

// The mean loss over replicas of step `step`.
double train_step(PipelineParallel& pipe, torch::optim::Optimizer& optimizer, int64_t step) {
  const ProcessGrid& grid = pipe.grid();
  const Batch mine = batch_of(step, grid.data_parallel_rank(), grid.data_parallel_size());
  optimizer.zero_grad();
  at::Tensor loss =
      at::full({1}, pipe.train_step(mine.inputs, mine.targets, &optimizer), at::kDouble);
  grid.data_parallel()->allreduce(loss, ReduceOp::Avg)->wait();
  return loss.item<double>();
}

std::string join(const std::vector<int64_t>& counts) {
  std::string text;
  for (size_t i = 0; i < counts.size(); ++i) text += (i ? "," : "") + std::to_string(counts[i]);
  return text;
}

struct Outcome {
  std::vector<double> losses;  // (world rank 0's, or under mpirun this rank's) one per step
  std::vector<int64_t> final_balance;
};

// The parameters and optimizer state (momentum; Adam's moments and step) of two
// checkpoints, tensor by tensor, exactly.
void expect_same_tensors(const std::string& want, const std::string& got) {
  EXPECT_THAT(strata::test::tensor_differences(
                  strata::test::checkpoint_tensors(want, {"parameter", "optimizer"}),
                  strata::test::checkpoint_tensors(got, {"parameter", "optimizer"})),
              ::testing::IsEmpty());
}

constexpr int kSteps = 6;
constexpr int kMoveAfter = 2;  // rebalance() after this many steps

// Trains kSteps steps on pp x dp ranks from `balance`; with `costs`, calls rebalance(costs)
// after kMoveAfter steps. Saves a checkpoint of the end to `path`. Threads of one process,
// or with `mpi` this rank of the mpirun job (whose size must be pp x dp).
// With `in_process`, the pp stages are worker threads of one rank (devices cpu x pp).
Outcome train(int pp, int dp, const std::string& balance, Optim optim,
              const std::vector<double>* costs, const std::string& path, bool mpi = false,
              bool in_process = false) {
  Outcome run;
  const auto run_on_ranks = [&](const Body& body) {
    if (mpi)
      run_mpi(body);
    else
      run_in_process(in_process ? dp : pp * dp, body);
  };
  run_on_ranks([&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(),
                     ProcessGridOptions().pipeline_parallel(in_process ? 1 : pp).data_parallel(dp));
    PipelineParallelOptions options = PipelineParallelOptions().micro_batches(2).balance(balance);
    if (in_process) options.devices(std::vector<c10::Device>(pp, c10::Device(c10::kCPU)));
    PipelineParallel pipe(make_model(std::vector<int>(8, 0)), grid, squared_error,
                          batch_of(0, 0, dp).inputs, options);
    auto optimizer = make_optimizer(optim, pipe);
    for (int64_t step = 0; step < kSteps; ++step) {
      if (costs != nullptr && step == kMoveAfter) {
        EXPECT_TRUE(pipe.rebalance(*costs, optimizer.get(), step)) << "no move from " << balance;
      }
      const double loss = train_step(pipe, *optimizer, step);
      if (mpi || comm.rank() == 0) run.losses.push_back(loss);
    }
    if (mpi || comm.rank() == 0) run.final_balance = pipe.partition().balance();
    pipe.save_checkpoint(path, optimizer.get(), kSteps);
  });
  return run;
}

TEST(AdaptiveBalance, MovedLayersTrainOnAsIfTheSplitHadBeenRightFromTheStart) {
  // Layer 6 costs most: the best split of 8 layers isolates it as far as it can.
  const std::vector<double> costs{1, 1, 1, 1, 1, 2, 9, 1};
  struct Case {
    int pp, dp;
    std::string bad;
  };
  for (const Case& c : {Case{2, 1, "1,7"}, Case{4, 1, "1,1,1,5"}, Case{2, 2, "2,6"}}) {
    const std::vector<int64_t> best =
        core::partition_layers(core::LayerCostTable::uniform(costs, c.pp));
    ASSERT_NE(join(best), c.bad);
    for (Optim optim : {Optim::SgdMomentum, Optim::Adam}) {
      SCOPED_TRACE("pp " + std::to_string(c.pp) + " dp " + std::to_string(c.dp) + " from " + c.bad +
                   " to " + join(best) + (optim == Optim::Adam ? ", Adam" : ", SGD"));
      strata::test::TempDir dir;
      const Outcome want = train(c.pp, c.dp, join(best), optim, nullptr, dir.path() + "/right");
      const Outcome got = train(c.pp, c.dp, c.bad, optim, &costs, dir.path() + "/moved");
      EXPECT_EQ(got.final_balance, best);
      ASSERT_EQ(got.losses.size(), want.losses.size());
      for (size_t k = 0; k < want.losses.size(); ++k)
        EXPECT_EQ(got.losses[k], want.losses[k]) << "step " << k;
      // Parameters and optimizer state (momentum; Adam's moments and step) as if never moved.
      expect_same_tensors(dir.path() + "/right", dir.path() + "/moved");
    }
  }
}

// In one process (--devices cpu,cpu): the layers stay where they are, the stages and the
// worker threads' executors change.
TEST(AdaptiveBalance, InProcessPipelineMovesToo) {
  const std::vector<double> costs{1, 1, 1, 1, 1, 2, 9, 1};
  const std::vector<int64_t> best = core::partition_layers(core::LayerCostTable::uniform(costs, 2));
  strata::test::TempDir dir;
  const Outcome want =
      train(2, 1, join(best), Optim::Adam, nullptr, dir.path() + "/right", false, true);
  const Outcome got = train(2, 1, "1,7", Optim::Adam, &costs, dir.path() + "/moved", false, true);
  EXPECT_EQ(got.final_balance, best);
  EXPECT_EQ(got.losses, want.losses);
  expect_same_tensors(dir.path() + "/right", dir.path() + "/moved");
}

// The same under mpirun: the moving layers travel between processes.
TEST(MpiAdaptiveBalance, MovedLayersTrainOnAsIfTheSplitHadBeenRightFromTheStart) {
  int world = 0;
  run_mpi([&](Communicator& comm) { world = comm.size(); });
  if (world % 2 != 0) GTEST_SKIP() << "needs an even world";
  const int pp = 2, dp = world / 2;
  const std::vector<double> costs{1, 1, 1, 1, 1, 2, 9, 1};
  const std::vector<int64_t> best =
      core::partition_layers(core::LayerCostTable::uniform(costs, pp));
  // Every rank writes and reads the checkpoints: one directory name for all of them.
  const std::string dir = "/tmp/strata-mpi-adaptive-" + std::to_string(world);
  const Outcome want = train(pp, dp, join(best), Optim::Adam, nullptr, dir + "/right", true);
  const Outcome got = train(pp, dp, "1,7", Optim::Adam, &costs, dir + "/moved", true);
  EXPECT_EQ(got.final_balance, best);
  EXPECT_EQ(got.losses, want.losses);
  expect_same_tensors(dir + "/right", dir + "/moved");
  run_mpi([&](Communicator& comm) {
    comm.barrier()->wait();  // every rank has read them
    if (comm.rank() == 0) std::filesystem::remove_all(dir);
  });
}

TEST(AdaptiveBalance, SmallGainsDoNotMove) {
  run_in_process(2, [&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(2));
    PipelineParallel pipe(make_model(std::vector<int>(8, 0)), grid, squared_error,
                          batch_of(0, 0, 1).inputs,
                          PipelineParallelOptions().micro_batches(2).balance("4,4"));
    auto optimizer = make_optimizer(Optim::SgdMomentum, pipe);
    train_step(pipe, *optimizer, 0);
    // {3, 5} would make the slowest stage 1.9% faster (1.06 -> 1.04): not enough.
    const std::vector<double> costs{0.5, 0.3, 0.2, 0.06, 0.2, 0.2, 0.2, 0.38};
    EXPECT_FALSE(pipe.rebalance(costs, optimizer.get(), 1));
    EXPECT_EQ(pipe.partition().balance(), (std::vector<int64_t>{4, 4}));
    EXPECT_TRUE(pipe.rebalance(costs, optimizer.get(), 1, /*min_gain=*/0.01));
    EXPECT_EQ(pipe.partition().balance(), (std::vector<int64_t>{3, 5}));
  });
}

// The whole loop, with known costs in place of the measured ones (adaptive_costs; sleeps
// overshoot by milliseconds on a busy machine, which could tip a close decision): from
// {1, 7} it moves to the dynamic program's split of those costs within its rounds and stays
// there, and every loss is the one of a run that started there.
TEST(AdaptiveBalance, ConvergesToTheSplitOfItsCosts) {
  const std::vector<double> costs{1, 1, 1, 1, 1, 1, 12, 12};
  const std::vector<int64_t> best = core::partition_layers(core::LayerCostTable::uniform(costs, 2));
  ASSERT_EQ(best, (std::vector<int64_t>{7, 1}));
  std::vector<double> reference;
  run_in_process(2, [&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(2));
    PipelineParallel pipe(make_model(std::vector<int>(8, 0)), grid, squared_error,
                          batch_of(0, 0, 1).inputs,
                          PipelineParallelOptions().micro_batches(2).balance("7,1"));
    auto optimizer = make_optimizer(Optim::Adam, pipe);
    for (int64_t step = 0; step < 8; ++step) {
      const double loss = train_step(pipe, *optimizer, step);
      if (comm.rank() == 0) reference.push_back(loss);
    }
  });
  run_in_process(2, [&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(2));
    std::vector<std::vector<double>> seen;  // the measured tables the decisions got
    PipelineParallel pipe(make_model(std::vector<int>(8, 0)), grid, squared_error,
                          batch_of(0, 0, 1).inputs,
                          PipelineParallelOptions()
                              .micro_batches(2)
                              .balance("1,7")
                              .adaptive(true)
                              .adaptive_warmup_steps(1)
                              .adaptive_window_steps(2)
                              .adaptive_costs([&](const std::vector<double>& measured) {
                                seen.push_back(measured);
                                return costs;
                              }));
    auto optimizer = make_optimizer(Optim::Adam, pipe);
    for (int64_t step = 0; step < 8; ++step) {
      const double loss = train_step(pipe, *optimizer, step);
      if (comm.rank() == 0) {
        EXPECT_EQ(loss, reference[step]) << "step " << step;
      }
    }
    EXPECT_EQ(pipe.partition().balance(), best);
    // Two rounds (a move, then nothing to move), each on a table of every layer's time.
    ASSERT_EQ(seen.size(), 2u);
    for (const auto& table : seen) {
      ASSERT_EQ(table.size(), 8u);
      for (double t : table) EXPECT_GT(t, 0);
    }
  });
}

// The measurement itself: a layer that sleeps 30 ms among layers that do not is the one the
// table charges most, with at least the time it slept.
TEST(AdaptiveBalance, MeasuredTimesFindTheSlowLayer) {
  run_in_process(2, [&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(2));
    PipelineParallel pipe(make_model({0, 0, 0, 0, 0, 30, 0, 0}), grid, squared_error,
                          batch_of(0, 0, 1).inputs,
                          PipelineParallelOptions().micro_batches(2).balance("4,4"));
    auto optimizer = make_optimizer(Optim::SgdMomentum, pipe);
    train_step(pipe, *optimizer, 0);
    const std::vector<double> times = pipe.measured_layer_times();
    ASSERT_EQ(times.size(), 8u);
    EXPECT_EQ(std::max_element(times.begin(), times.end()) - times.begin(), 5);
    EXPECT_GE(times[5], 0.030);
  });
}

TEST(AdaptiveBalance, RefusesWhatItCannotMove) {
  run_in_process(2, [&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(2));
    try {
      PipelineParallel pipe(make_model(std::vector<int>(8, 0)), grid, squared_error,
                            batch_of(0, 0, 1).inputs,
                            PipelineParallelOptions()
                                .micro_batches(2)
                                .schedule("interleaved")
                                .virtual_stages(2)
                                .balance("adaptive"));
      ADD_FAILURE() << "balance adaptive with virtual stages was accepted";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr("balance adaptive with 2 virtual stages per "
                                                 "rank, expected 1"));
    }
  });
}

}  // namespace
}  // namespace strata::parallel::testing
