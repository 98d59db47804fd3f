// PipelineParallel: pipeline x data parallel gives the single-process gradients of the
// global batch; evaluation is the model's forward; checkpoints saved with one layout
// resume with another at the same loss; partition choices and their errors.
#include <torch/torch.h>

#include <gmock/gmock.h>

#include "comm_test_support.h"
#include "core/checkpoint_compare.h"
#include "core/test_util.h"
#include "strata/accel/device.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"
#include "strata/core/parameters.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"

namespace strata::parallel::testing {
namespace {

constexpr double kTolerance = 1e-5;  // relative, float32

// A small classifier: 8 layers, so K = 4 stages fit; its own generator, because the ranks
// of an in-process job build their models at the same time.
torch::nn::Sequential make_classifier() {
  torch::nn::Sequential model(torch::nn::Linear(6, 16), torch::nn::ReLU(),
                              torch::nn::Linear(16, 16), torch::nn::Tanh(),
                              torch::nn::Linear(16, 16), torch::nn::ReLU(),
                              torch::nn::Linear(16, 16), torch::nn::Linear(16, 3));
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.4);
  return model;
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(logits, labels);
}

struct Batch {
  at::Tensor inputs, labels;
};
Batch make_batch(int64_t rows, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {at::randn({rows, 6}, gen), at::randint(0, 3, {rows}, gen)};
}
// Replica `index` of `replicas`' share of the global batch.
Batch shard(const Batch& global, int index, int replicas) {
  return {global.inputs.chunk(replicas)[index], global.labels.chunk(replicas)[index]};
}

// The loss of the global batch from each replica's.
double mean_over_replicas(const ProcessGrid& grid, double replica_loss) {
  at::Tensor loss = at::full({1}, replica_loss, at::kDouble);
  grid.data_parallel()->allreduce(loss, ReduceOp::Avg)->wait();
  return loss.item<double>();
}

double relative_error(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = expected.norm().item<double>();
  return (actual - expected).norm().item<double>() / (scale > 0 ? scale : 1);
}

PipelineParallel make_pipeline(Communicator& comm, int pp, torch::nn::Sequential model,
                               const Batch& sample, PipelineParallelOptions options = {}) {
  ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(pp));
  return {model, grid, cross_entropy, sample.inputs, options};
}

TEST(PipelineParallel, PipelineTimesDataParallelMatchesSingleProcess) {
  const std::vector<std::pair<std::string, Recompute>> cases = {
      {"gpipe", Recompute::Never}, {"1f1b", Recompute::Always}, {"zb-h1", Recompute::ExceptLast}};
  for (const auto& [schedule, recompute] : cases) {
    SCOPED_TRACE(schedule + " recompute " + to_string(recompute));
    run_in_process(4, [&](Communicator& comm) {
      const Batch global = make_batch(24, 1);
      ProcessGrid grid(comm.shared_from_this(),
                       ProcessGridOptions().pipeline_parallel(2).data_parallel(2));
      const Batch mine = shard(global, grid.data_parallel_rank(), 2);
      PipelineParallel pipe(
          make_classifier(), grid, cross_entropy, mine.inputs,
          PipelineParallelOptions().schedule(schedule).micro_batches(3).recompute(recompute));
      const double loss = pipe.train_step(mine.inputs, mine.labels);
      const double replica_loss =
          cross_entropy(make_classifier()->forward(mine.inputs), mine.labels).item<double>();
      EXPECT_NEAR(loss, replica_loss, kTolerance * replica_loss);

      auto reference = make_classifier();
      const at::Tensor expected = cross_entropy(reference->forward(global.inputs), global.labels);
      expected.backward();
      const auto want = reference->named_parameters();
      for (const auto& p : pipe.local_module().named_parameters()) {
        SCOPED_TRACE(p.key());
        ASSERT_TRUE(p.value().grad().defined());
        EXPECT_LT(relative_error(p.value().grad(), want[p.key()].grad()), kTolerance);
      }
    });
  }
}

TEST(PipelineParallel, EvaluateIsTheModelsForward) {
  for (int ranks : {1, 2, 4})
    run_in_process(ranks, [](Communicator& comm) {
      const Batch batch = make_batch(10, 2);
      auto pipe = make_pipeline(comm, comm.size(), make_classifier(), batch,
                                PipelineParallelOptions().micro_batches(2));
      const at::Tensor expected = make_classifier()->forward(batch.inputs);
      EXPECT_LT(relative_error(pipe.evaluate(batch.inputs), expected), 1e-6);
    });
}

TEST(PipelineParallel, InterleavedStagesEvaluateInOrder) {
  run_in_process(2, [](Communicator& comm) {
    const Batch batch = make_batch(8, 4);
    auto pipe = make_pipeline(
        comm, 2, make_classifier(), batch,
        PipelineParallelOptions().schedule("interleaved").virtual_stages(2).micro_batches(2));
    EXPECT_EQ(pipe.stages().size(), 2u);
    EXPECT_LT(relative_error(pipe.evaluate(batch.inputs), make_classifier()->forward(batch.inputs)),
              1e-6);
  });
}

// Two SGD steps (with momentum) with pp = 2, dp = 2, saved, then four more. Resumed with
// pp = 1 (one rank), pp = 4, and pp = 2, dp = 2, every rank's optimizer holds exactly the
// momentum the checkpoint saved for its parameters, and the next four steps' losses are the
// uninterrupted run's to float rounding: a load that dropped the momentum would still give
// the first of them, not the others.
TEST(PipelineParallel, CheckpointsResumeWithAnyLayout) {
  constexpr int kStepsAfterSave = 4;
  strata::test::TempDir dir;
  const std::string path = dir.path() + "/step-2";
  const auto sgd_for = [](PipelineParallel& pipe) {
    return torch::optim::SGD(pipe.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  };
  // The mean loss over replicas of the global batch of step `step`.
  const auto train_step = [](PipelineParallel& pipe, torch::optim::SGD& sgd, int64_t step) {
    const ProcessGrid& grid = pipe.grid();
    const Batch mine =
        shard(make_batch(24, 20 + step), grid.data_parallel_rank(), grid.data_parallel_size());
    sgd.zero_grad();
    return mean_over_replicas(grid, pipe.train_step(mine.inputs, mine.labels, &sgd));
  };
  const Batch sample = make_batch(24, 0);
  std::vector<double> expected(kStepsAfterSave);
  run_in_process(4, [&](Communicator& comm) {
    ProcessGrid grid(comm.shared_from_this(),
                     ProcessGridOptions().pipeline_parallel(2).data_parallel(2));
    PipelineParallel pipe(make_classifier(), grid, cross_entropy, sample.inputs,
                          PipelineParallelOptions().micro_batches(2));
    auto sgd = sgd_for(pipe);
    for (int step = 0; step < 2; ++step) train_step(pipe, sgd, step);
    pipe.save_checkpoint(path, &sgd, 2, {{"note", "pp2 dp2"}});
    for (int k = 0; k < kStepsAfterSave; ++k) {
      const double loss = train_step(pipe, sgd, 2 + k);
      if (comm.rank() == 0) expected[k] = loss;
    }
  });
  for (int pp : {1, 4, 2}) {
    SCOPED_TRACE("resumed with pp " + std::to_string(pp));
    const int dp = pp == 2 ? 2 : 1;
    run_in_process(pp * dp, [&](Communicator& comm) {
      ProcessGrid grid(comm.shared_from_this(),
                       ProcessGridOptions().pipeline_parallel(pp).data_parallel(dp));
      // A different initialization: everything must come from the checkpoint.
      auto model = make_classifier();
      for (auto& p : model->parameters()) p.data().mul_(-2);
      PipelineParallel pipe(model, grid, cross_entropy, sample.inputs,
                            PipelineParallelOptions().micro_batches(3));
      auto sgd = sgd_for(pipe);
      nlohmann::json extra;
      EXPECT_EQ(pipe.load_checkpoint(path, &sgd, &extra), 2);
      EXPECT_EQ(extra["note"], "pp2 dp2");
      EXPECT_THAT(strata::test::tensor_differences(
                      strata::test::checkpoint_optimizer_state(path, pipe.local_module()),
                      strata::test::optimizer_state(pipe.local_module(), sgd)),
                  ::testing::IsEmpty())
          << "rank " << comm.rank() << ": optimizer state after the load";
      for (int k = 0; k < kStepsAfterSave; ++k) {
        const double loss = train_step(pipe, sgd, 2 + k);
        EXPECT_NEAR(loss, expected[k], kTolerance * expected[k]) << "step " << 3 + k;
      }
    });
  }
}

TEST(PipelineParallel, ChoosesThePartitionItIsAskedFor) {
  std::vector<LayerProfile> layers;
  for (int i = 0; i < 6; ++i)
    layers.push_back({std::to_string(i), "Linear", 10 * (i + 1), 40 * (i + 1), 1.0 + (i == 0) * 9,
                      100 * (6 - i)});
  EXPECT_EQ(choose_partition(layers, "2,4", 2, "1f1b", 4).balance(), (std::vector<int64_t>{2, 4}));
  // Parameters grow with depth: the later stage gets fewer layers.
  EXPECT_EQ(choose_partition(layers, "params", 2, "1f1b", 4).balance(),
            (std::vector<int64_t>{4, 2}));
  // Layer 0 is ten times slower than the rest.
  EXPECT_EQ(choose_partition(layers, "time", 2, "1f1b", 4).balance(), (std::vector<int64_t>{1, 5}));
  const PipelinePartition automatic = choose_partition(layers, "auto", 2, "gpipe", 4);
  EXPECT_GT(automatic.memory_limit_bytes, 0);
  expect_error([&] { choose_partition(layers, "3,x", 2, "1f1b", 4); },
               "balance '3,x': expected params, time, memory, auto or positive layer counts");
  expect_error([&] { choose_partition(layers, "3,2,1", 2, "1f1b", 4); },
               "balance '3,2,1' has 3 stages, expected 2");
  expect_error([&] { choose_partition(layers, "params", 7, "1f1b", 4); },
               "7 stages but the model has only 6 layers");
}

TEST(PipelineParallel, ErrorsReachEveryRank) {
  run_in_process(2, [](Communicator& comm) {
    const Batch batch = make_batch(8, 5);
    expect_error(
        [&] {
          make_pipeline(comm, 2, make_classifier(), batch,
                        PipelineParallelOptions().balance("1,1,1"));
        },
        "balance '1,1,1' has 3 stages, expected 2");
    expect_error(
        [&] {
          make_pipeline(comm, 2, make_classifier(), batch,
                        PipelineParallelOptions().micro_batches(9));
        },
        "the sample batch has 8 rows, expected at least the 9 micro-batches");
  });
}

// Over the whole mpirun job: pp = 2 and dp = world / 2.
// ---- In-process pipelines: one process, one worker thread per device ---------------------

// A Linear without bias on a weight tensor given to it: how a model ties two layers.
class SharedLinearImpl : public torch::nn::Module {
 public:
  explicit SharedLinearImpl(const at::Tensor& weight)
      : weight_(register_parameter("weight", weight)) {}
  at::Tensor forward(const at::Tensor& x) { return torch::nn::functional::linear(x, weight_); }

 private:
  at::Tensor weight_;
};
TORCH_MODULE(SharedLinear);

// The same, Cloneable: a pipeline can give another in-process rank a copy of its own.
class CloneableSharedLinearImpl : public torch::nn::Cloneable<CloneableSharedLinearImpl> {
 public:
  explicit CloneableSharedLinearImpl(const at::Tensor& weight)
      : weight_(register_parameter("weight", weight)) {}
  // Only clone() calls it: a tensor of the clone's own, which clone() then fills.
  void reset() override { weight_ = register_parameter("weight", weight_.detach().clone()); }
  at::Tensor forward(const at::Tensor& x) { return torch::nn::functional::linear(x, weight_); }

 private:
  at::Tensor weight_;
};
TORCH_MODULE(CloneableSharedLinear);

PipelineParallelOptions on_devices(const std::vector<c10::Device>& devices) {
  return PipelineParallelOptions().devices(devices).move_module(
      [](torch::nn::Module& module, const c10::Device& device) {
        accel::to_device(module, device);
      });
}

// A world of one process with K devices runs the K pipeline ranks as threads: every
// schedule gives the single-process loss and gradients, with every parameter and gradient
// on its rank's device.
TEST(PipelineParallelDevices, InProcessPipelineMatchesSingleProcess) {
  const std::vector<std::tuple<std::string, int, int, Recompute>> cases = {
      {"gpipe", 2, 1, Recompute::Never},
      {"1f1b", 4, 1, Recompute::Always},
      {"zb-h1", 2, 1, Recompute::ExceptLast},
      {"interleaved", 2, 2, Recompute::Never}};
  for (const bool accelerators : {false, true})
    for (const auto& [schedule, ranks, virtual_stages, recompute] : cases) {
      SCOPED_TRACE(schedule + (accelerators ? " on accelerators" : " on cpu"));
      std::vector<c10::Device> devices;
      for (int r = 0; r < ranks; ++r)
        devices.push_back(accelerators ? accel::device(r) : c10::Device(c10::kCPU));
      run_in_process(1, [&](Communicator& comm) {
        const Batch batch = make_batch(24, 1);
        ProcessGrid grid(comm.shared_from_this());
        PipelineParallel pipe(make_classifier(), grid, cross_entropy, batch.inputs,
                              on_devices(devices)
                                  .schedule(schedule)
                                  .micro_batches(4)
                                  .virtual_stages(virtual_stages)
                                  .recompute(recompute));
        ASSERT_EQ(pipe.executors().size(), static_cast<size_t>(ranks));
        const double loss = pipe.train_step(batch.inputs, batch.labels);
        auto reference = make_classifier();
        const at::Tensor expected = cross_entropy(reference->forward(batch.inputs), batch.labels);
        expected.backward();
        EXPECT_NEAR(loss, expected.item<double>(), kTolerance * expected.item<double>());
        const auto want = reference->named_parameters();
        for (const auto& [s, stage] : pipe.stages()) {
          const c10::Device device = devices[s % ranks];
          for (const auto& p : stage->named_parameters()) {
            SCOPED_TRACE("stage " + std::to_string(s) + " " + p.key());
            ASSERT_TRUE(p.value().grad().defined());
            EXPECT_EQ(p.value().device(), device);
            EXPECT_EQ(p.value().grad().device(), device);
            EXPECT_LT(relative_error(p.value().grad().cpu(), want[p.key()].grad()), kTolerance);
          }
        }
        EXPECT_LT(
            relative_error(pipe.evaluate(batch.inputs), make_classifier()->forward(batch.inputs)),
            1e-6);
      });
    }
}

// Three SGD steps of a pipeline; the losses and the parameters after.
using Trained = std::pair<std::vector<double>, std::map<std::string, at::Tensor>>;
Trained train_steps(PipelineParallel& pipe) {
  torch::optim::SGD sgd(pipe.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  std::vector<double> losses;
  for (int step = 0; step < 3; ++step) {
    const Batch batch = make_batch(24, 30 + step);
    sgd.zero_grad();
    losses.push_back(pipe.train_step(batch.inputs, batch.labels, &sgd));
  }
  std::map<std::string, at::Tensor> parameters;
  for (const auto& p : pipe.local_module().named_parameters())
    parameters[p.key()] = p.value().detach().cpu();
  return {losses, parameters};
}

// Training on two simulated accelerators gives bit for bit the losses and parameters of
// training on two CPU workers, and both equal a pipeline of two in-process ranks.
TEST(PipelineParallelDevices, SimulatedAcceleratorsAreBitIdenticalToTheCpu) {
  const auto train = [](const PipelineParallelOptions& options, Communicator& comm, int pp) {
    const Batch sample = make_batch(24, 0);
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(pp));
    PipelineParallel pipe(make_classifier(), grid, cross_entropy, sample.inputs,
                          PipelineParallelOptions(options).micro_batches(3));
    return train_steps(pipe);
  };
  Trained cpu, accelerators, ranks;
  run_in_process(1, [&](Communicator& comm) {
    cpu = train(on_devices({c10::kCPU, c10::kCPU}), comm, 1);
    accelerators = train(on_devices({accel::device(0), accel::device(1)}), comm, 1);
  });
  run_in_process(2, [&](Communicator& comm) {
    auto mine = train({}, comm, 2);
    if (comm.rank() == 0) ranks.first = mine.first;
  });
  EXPECT_EQ(accelerators.first, cpu.first);
  ASSERT_EQ(accelerators.second.size(), cpu.second.size());
  for (const auto& [name, value] : cpu.second)
    EXPECT_TRUE(at::equal(accelerators.second.at(name), value)) << name;
  ASSERT_EQ(ranks.first.size(), cpu.first.size());
  for (size_t i = 0; i < cpu.first.size(); ++i)
    EXPECT_NEAR(cpu.first[i], ranks.first[i], kTolerance * ranks.first[i]) << "step " << i;
}

// A weight tied across the two ranks: 0.weight (rank 0) is 2.weight (rank 1).
torch::nn::Sequential make_tied_classifier() {
  torch::nn::Linear first(6, 6), last(6, 3);
  torch::nn::Sequential model(first, torch::nn::Tanh(), CloneableSharedLinear(first->weight),
                              torch::nn::Tanh(), last);
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.4);
  return model;
}

// Each in-process rank holds its own copy of a weight tied across ranks (as each mpirun
// rank does), and the copies' gradients are summed: the training equals the single-process
// one, on CPU workers and on two simulated accelerators.
TEST(PipelineParallelDevices, TiedWeightsAcrossInProcessRanksMatchSingleProcess) {
  auto reference = make_tied_classifier();
  torch::optim::SGD sgd(core::unique_parameters(*reference),
                        torch::optim::SGDOptions(0.1).momentum(0.9));
  std::vector<double> expected;
  for (int step = 0; step < 3; ++step) {
    const Batch batch = make_batch(24, 30 + step);
    sgd.zero_grad();
    at::Tensor loss = cross_entropy(reference->forward(batch.inputs), batch.labels);
    loss.backward();
    sgd.step();
    expected.push_back(loss.item<double>());
  }
  for (const bool accelerators : {false, true}) {
    SCOPED_TRACE(accelerators ? "on accelerators" : "on cpu");
    const std::vector<c10::Device> devices =
        accelerators ? std::vector<c10::Device>{accel::device(0), accel::device(1)}
                     : std::vector<c10::Device>{c10::kCPU, c10::kCPU};
    run_in_process(1, [&](Communicator& comm) {
      const Batch sample = make_batch(24, 30);
      ProcessGrid grid(comm.shared_from_this());
      for (const Recompute recompute : {Recompute::Never, Recompute::Always}) {
        PipelineParallel pipe(
            make_tied_classifier(), grid, cross_entropy, sample.inputs,
            on_devices(devices).micro_batches(3).balance("2,3").recompute(recompute));
        const auto [losses, parameters] = train_steps(pipe);
        for (size_t i = 0; i < expected.size(); ++i)
          EXPECT_NEAR(losses[i], expected[i], kTolerance * expected[i]) << "step " << i;
        EXPECT_TRUE(at::allclose(parameters.at("0.weight"), parameters.at("2.weight")));
        for (const auto& p : reference->named_parameters())
          EXPECT_LT(relative_error(parameters.at(p.key()), p.value().detach()), kTolerance)
              << p.key();
      }
    });
  }
}

// A dropout on each of two stages (balance 3,3), so that both workers draw.
torch::nn::Sequential make_dropout_classifier() {
  torch::nn::Sequential model(torch::nn::Linear(6, 16), torch::nn::Dropout(0.3), torch::nn::Tanh(),
                              torch::nn::Linear(16, 16), torch::nn::Dropout(0.3),
                              torch::nn::Linear(16, 3));
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.4);
  return model;
}

// Two CPU workers training a model with dropout, recomputed or not: each worker draws
// from a generator of its own (as each mpirun rank does), so the runs are repeatable and a
// recomputation replays its forward's masks: the same losses with and without it.
Trained train_dropout_in_process(Recompute recompute) {
  Trained trained;
  run_in_process(1, [&](Communicator& comm) {
    torch::manual_seed(7);
    ProcessGrid grid(comm.shared_from_this());
    PipelineParallel pipe(
        make_dropout_classifier(), grid, cross_entropy, make_batch(24, 30).inputs,
        on_devices({c10::kCPU, c10::kCPU}).micro_batches(4).balance("3,3").recompute(recompute));
    trained = train_steps(pipe);
  });
  return trained;
}

TEST(PipelineParallelDevices, DropoutDrawsPerWorkerAndRecomputesInOneProcess) {
  const Trained plain = train_dropout_in_process(Recompute::Never);
  for (int run = 0; run < 3; ++run) {
    const Trained recomputed = train_dropout_in_process(Recompute::Always);
    for (size_t i = 0; i < plain.first.size(); ++i)
      EXPECT_NEAR(recomputed.first[i], plain.first[i], kTolerance * plain.first[i])
          << "run " << run << " step " << i;
  }
}

TEST(PipelineParallelDevices, RejectsWhatAnInProcessPipelineCannotHold) {
  run_in_process(1, [](Communicator& comm) {
    const Batch batch = make_batch(8, 1);
    ProcessGrid grid(comm.shared_from_this());
    torch::nn::Linear first(6, 6), last(6, 3);
    torch::nn::Sequential model(first, torch::nn::Tanh(), SharedLinear(first->weight),
                                torch::nn::Tanh(), last);
    expect_error(
        [&] {
          PipelineParallel pipe(model, grid, cross_entropy, batch.inputs,
                                on_devices({c10::kCPU, c10::kCPU}).micro_batches(2).balance("2,3"));
        },
        "layer '2' (" + model->ptr(2)->name() +
            ") holds a weight tied across in-process pipeline ranks and cannot be copied");
  });
  run_in_process(2, [](Communicator& comm) {
    const Batch batch = make_batch(8, 1);
    expect_error(
        [&] {
          make_pipeline(comm, 2, make_classifier(), batch,
                        PipelineParallelOptions().micro_batches(2).devices(
                            {c10::kCPU, c10::kCPU, c10::kCPU}));
        },
        "pipeline: 3 devices for 2 pipeline ranks, expected one or one per rank");
  });
}

// The dropout masks of two in-process CPU workers are those of two mpirun ranks: ranks 0
// and 1 train the model as a pipeline, and each process trains it again in one process.
TEST(MpiPipelineParallel, InProcessDropoutMatchesMpirun) {
  run_mpi([](Communicator& comm) {
    CommunicatorPtr pair = comm.split(comm.rank() < 2 ? 0 : -1, comm.rank());
    if (!pair) return;
    torch::manual_seed(7);
    ProcessGrid grid(pair, ProcessGridOptions().pipeline_parallel(2));
    PipelineParallel pipe(
        make_dropout_classifier(), grid, cross_entropy, make_batch(24, 30).inputs,
        PipelineParallelOptions().micro_batches(4).balance("3,3").recompute(Recompute::Always));
    const std::vector<double> mpirun = train_steps(pipe).first;
    const std::vector<double> one_process = train_dropout_in_process(Recompute::Always).first;
    ASSERT_EQ(one_process.size(), mpirun.size());
    for (size_t i = 0; i < mpirun.size(); ++i)
      EXPECT_NEAR(one_process[i], mpirun[i], kTolerance * mpirun[i]) << "step " << i;
  });
}

TEST(MpiPipelineParallel, PipelineTimesDataParallelMatchesSingleProcess) {
  run_mpi([](Communicator& comm) {
    if (comm.size() % 2 != 0) GTEST_SKIP() << "needs an even world";
    const int dp = comm.size() / 2;
    const Batch global = make_batch(12 * dp, 7);
    ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(2));
    const Batch mine = shard(global, grid.data_parallel_rank(), dp);
    PipelineParallel pipe(make_classifier(), grid, cross_entropy, mine.inputs,
                          PipelineParallelOptions().micro_batches(4).balance("time"));
    const double loss = mean_over_replicas(grid, pipe.train_step(mine.inputs, mine.labels));
    auto reference = make_classifier();
    const at::Tensor expected = cross_entropy(reference->forward(global.inputs), global.labels);
    expected.backward();
    EXPECT_NEAR(loss, expected.item<double>(), kTolerance * expected.item<double>());
    const auto want = reference->named_parameters();
    for (const auto& p : pipe.local_module().named_parameters())
      EXPECT_LT(relative_error(p.value().grad(), want[p.key()].grad()), kTolerance) << p.key();
  });
}

}  // namespace
}  // namespace strata::parallel::testing
