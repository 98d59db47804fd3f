// PipelineExecutor: every schedule, run on K ranks, gives the single-process loss and
// gradients of the whole batch; an optimizer step through the executor is a plain one;
// shapes may change between steps; records cover every instruction.
#include <torch/torch.h>

#include "comm_test_support.h"
#include "strata/core/error.h"
#include "strata/parallel/pipeline_executor.h"
#include "strata/parallel/pipeline_partition.h"

namespace strata::parallel::testing {
namespace {

constexpr int64_t kLayers = 16;  // enough for 8 stages (4 ranks, 2 chunks each)
constexpr int64_t kWidth = 8;
constexpr double kTolerance = 1e-5;  // relative, float32

// (Linear, Tanh) x 8, initialized from a generator of its own: tests build models on
// several threads at once, and the global generator would interleave their draws. With
// `in_place`, (Linear, in-place ReLU): the activation rewrites the Linear's output, which
// the split backward must still handle.
torch::nn::Sequential make_model(bool in_place = false) {
  torch::nn::Sequential model;
  for (int64_t i = 0; i < kLayers / 2; ++i) {
    model->push_back(torch::nn::Linear(kWidth, kWidth));
    if (in_place)
      model->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    else
      model->push_back(torch::nn::Tanh());
  }
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.5);
  return model;
}

struct Batch {
  at::Tensor inputs, targets;
};
Batch make_batch(int64_t rows, uint64_t seed = 5) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {at::randn({rows, kWidth}, gen), at::randn({rows, kWidth}, gen)};
}

at::Tensor mse(const at::Tensor& output, const at::Tensor& target) {
  return torch::mse_loss(output, target);
}

// The model cut into `stages` stages of about equal layer counts.
std::vector<torch::nn::Sequential> split(const torch::nn::Sequential& model, int stages) {
  std::vector<LayerProfile> layers;
  for (const auto& child : model->named_children())
    layers.push_back({child.key(), child.value()->name(), 1, 4, 1.0, 4});
  std::vector<int64_t> balance(stages, kLayers / stages);
  for (int64_t i = 0; i < kLayers % stages; ++i) ++balance[i];
  return split_sequential(model, partition_explicit(layers, balance));
}

// This rank's stages of `model` under `schedule`.
std::map<int, torch::nn::Sequential> my_stages(const torch::nn::Sequential& model,
                                               const PipelineSchedule& schedule, int rank) {
  auto parts = split(model, schedule.num_stages);
  std::map<int, torch::nn::Sequential> mine;
  for (int s = 0; s < schedule.num_stages; ++s)
    if (schedule.rank_of_stage(s) == rank) mine[s] = parts[s];
  return mine;
}

double relative_error(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = expected.norm().item<double>();
  return (actual - expected).norm().item<double>() / (scale > 0 ? scale : 1);
}

// The reference: the whole batch through the whole model in one process.
double reference_step(torch::nn::Sequential model, const Batch& batch) {
  at::Tensor loss = mse(model->forward(batch.inputs), batch.targets);
  loss.backward();
  return loss.item<double>();
}

// Every parameter of this rank's stages has the reference's gradient.
void expect_gradients(const std::map<int, torch::nn::Sequential>& stages,
                      const torch::nn::Sequential& reference) {
  const auto expected = reference->named_parameters();
  for (const auto& [s, stage] : stages) {
    for (const auto& p : stage->named_parameters()) {
      SCOPED_TRACE("stage " + std::to_string(s) + " parameter " + p.key());
      ASSERT_TRUE(p.value().grad().defined());
      EXPECT_LT(relative_error(p.value().grad(), expected[p.key()].grad()), kTolerance);
    }
  }
}

struct ScheduleCase {
  std::string name;
  int virtual_stages;
};

// One step of `name` with K = comm.size() ranks and M micro-batches against the reference.
void check_schedule(Communicator& comm, const ScheduleCase& c, int micro_batches,
                    bool in_place = false) {
  PipelineSchedule schedule;
  try {
    schedule = make_pipeline_schedule(c.name, comm.size(), micro_batches, c.virtual_stages);
  } catch (const strata::Error&) {
    return;  // a combination the generator does not make (interleaved with M % K != 0)
  }
  SCOPED_TRACE(c.name + " v " + std::to_string(c.virtual_stages) + " K " +
               std::to_string(comm.size()) + " M " + std::to_string(micro_batches));
  auto model = make_model(in_place);
  auto stages = my_stages(model, schedule, comm.rank());
  PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse);
  const Batch batch = make_batch(24);
  const double loss = executor.train_step(batch.inputs, batch.targets);

  auto reference = make_model(in_place);
  const double expected = reference_step(reference, batch);
  EXPECT_NEAR(loss, expected, kTolerance * std::abs(expected));
  expect_gradients(stages, reference);

  const auto& program = schedule.ranks[comm.rank()];
  const auto& records = executor.records();
  ASSERT_EQ(records.size(), program.size());
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].instruction, program[i]);
    EXPECT_LE(0, records[i].start);
    EXPECT_LE(records[i].start, records[i].end);
    if (i > 0) {
      EXPECT_LE(records[i - 1].end, records[i].start);
    }
  }
}

void check_all_micro_batches(const ScheduleCase& c) {
  for (int ranks : {2, 4})
    for (int micro_batches : {1, 3, 8})
      run_in_process(ranks, [&](Communicator& comm) { check_schedule(comm, c, micro_batches); });
}

TEST(PipelineExecutor, GPipeMatchesSingleProcess) { check_all_micro_batches({"gpipe", 1}); }
TEST(PipelineExecutor, OneFOneBMatchesSingleProcess) { check_all_micro_batches({"1f1b", 1}); }
TEST(PipelineExecutor, ZeroBubbleH1MatchesSingleProcess) { check_all_micro_batches({"zb-h1", 1}); }
TEST(PipelineExecutor, InterleavedMatchesSingleProcess) {
  check_all_micro_batches({"interleaved", 2});
}

TEST(PipelineExecutor, SplitBackwardHandlesInPlaceLayers) {
  for (int ranks : {2, 4})
    run_in_process(ranks, [](Communicator& comm) {
      check_schedule(comm, {"zb-h1", 1}, 8, /*in_place=*/true);
      check_schedule(comm, {"1f1b", 1}, 3, /*in_place=*/true);
    });
}

TEST(PipelineExecutor, OneRankRunsEveryStageLocally) {
  run_in_process(1, [](Communicator& comm) { check_schedule(comm, {"1f1b", 1}, 3); });
}

TEST(PipelineExecutor, OptimizerStepsEqualSingleProcessSgd) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 3);
    auto model = make_model();
    auto stages = my_stages(model, schedule, comm.rank());
    std::vector<at::Tensor> parameters;
    for (const auto& [s, stage] : stages)
      for (const auto& p : stage->parameters()) parameters.push_back(p);
    torch::optim::SGD sgd(parameters, torch::optim::SGDOptions(0.1).momentum(0.9));
    PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse);

    auto reference = make_model();
    torch::optim::SGD reference_sgd(reference->parameters(),
                                    torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int step = 0; step < 3; ++step) {
      const Batch batch = make_batch(24, 100 + step);
      sgd.zero_grad();
      const double loss = executor.train_step(batch.inputs, batch.targets, &sgd);
      reference_sgd.zero_grad();
      const double expected = reference_step(reference, batch);
      reference_sgd.step();
      EXPECT_NEAR(loss, expected, kTolerance * std::abs(expected)) << "step " << step;
    }
    const auto expected = reference->named_parameters();
    for (const auto& [s, stage] : stages)
      for (const auto& p : stage->named_parameters())
        EXPECT_LT(relative_error(p.value(), expected[p.key()]), kTolerance) << p.key();
  });
}

TEST(PipelineExecutor, ShapesMayChangeBetweenSteps) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("zb-h1", comm.size(), 3);
    auto model = make_model();
    auto stages = my_stages(model, schedule, comm.rank());
    PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse);
    for (int64_t rows : {24, 12}) {
      const Batch batch = make_batch(rows, rows);
      for (auto& [s, stage] : stages) stage->zero_grad();
      const double loss = executor.train_step(batch.inputs, batch.targets);
      auto reference = make_model();
      const double expected = reference_step(reference, batch);
      EXPECT_NEAR(loss, expected, kTolerance * std::abs(expected)) << rows << " rows";
      expect_gradients(stages, reference);
    }
  });
}

TEST(PipelineExecutor, GradientSyncHookRunsOncePerStep) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("gpipe", comm.size(), 2);
    auto model = make_model();
    PipelineExecutor executor(my_stages(model, schedule, comm.rank()), comm.shared_from_this(),
                              schedule, mse);
    int calls = 0;
    executor.set_gradient_sync([&calls] { ++calls; });
    const Batch batch = make_batch(8);
    executor.train_step(batch.inputs, batch.targets);
    EXPECT_EQ(calls, 1);
  });
}

TEST(PipelineExecutor, RejectsBatchNotDivisibleByMicroBatches) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 3);
    auto model = make_model();
    PipelineExecutor executor(my_stages(model, schedule, comm.rank()), comm.shared_from_this(),
                              schedule, mse);
    const Batch batch = make_batch(25);
    expect_error([&] { executor.train_step(batch.inputs, batch.targets); },
                 "batch size 25 is not a multiple of the 3 micro-batches");
  });
}

TEST(PipelineExecutor, RejectsStagesThatDoNotMatchTheSchedule) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 2);
    auto model = make_model();
    auto stages = my_stages(model, schedule, comm.rank());
    auto missing = stages;
    missing.erase(comm.rank());
    expect_error([&] { PipelineExecutor executor(missing, comm.shared_from_this(), schedule, mse); },
                 "but no module was given for it");
    auto extra = stages;
    extra[1 - comm.rank()] = stages.begin()->second;
    expect_error([&] { PipelineExecutor executor(extra, comm.shared_from_this(), schedule, mse); },
                 "expected one of rank");
    const auto three = make_pipeline_schedule("1f1b", 3, 2);
    expect_error([&] { PipelineExecutor executor(stages, comm.shared_from_this(), three, mse); },
                 "communicator size (the schedule's ranks): got 2, expected 3");
    const auto many = make_pipeline_schedule("gpipe", comm.size(), 8200);
    expect_error([&] { PipelineExecutor executor(stages, comm.shared_from_this(), many, mse); },
                 "stages * micro-batches * 2 = 32800 message tags, expected at most 32768");
  });
}

// Over the whole mpirun job, K = the world size (any size from 2 to 8).
TEST(MpiPipelineExecutor, OneFOneBMatchesSingleProcess) {
  run_mpi([](Communicator& comm) {
    for (int micro_batches : {1, 4}) check_schedule(comm, {"1f1b", 1}, micro_batches);
  });
}

TEST(MpiPipelineExecutor, ZeroBubbleH1AndInterleavedMatchSingleProcess) {
  run_mpi([](Communicator& comm) {
    check_schedule(comm, {"zb-h1", 1}, 4);
    check_schedule(comm, {"interleaved", 2}, 2 * comm.size());
  });
}

}  // namespace
}  // namespace strata::parallel::testing
