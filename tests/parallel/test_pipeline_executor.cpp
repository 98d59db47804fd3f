// PipelineExecutor: every schedule, run on K ranks, gives the single-process loss and
// gradients of the whole batch, also with recomputation, skip connections across stages
// and tied weights; an optimizer step through the executor is a plain one; shapes may
// change between steps; records cover every instruction.
#include <torch/torch.h>

#include "comm_test_support.h"
#include "pipeline_stages.h"
#include "sequential_schedule.h"
#include "strata/accel/device.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"
#include "strata/parallel/pipeline/executor.h"
#include "strata/parallel/pipeline/partition.h"
#include "strata/parallel/pipeline/schedule_registry.h"
#include "strata/parallel/pipeline/skip.h"

namespace strata::parallel::testing {
namespace {

constexpr int64_t kLayers = 16;  // enough for 8 stages (4 ranks, 2 chunks each)
constexpr int64_t kWidth = 8;
constexpr double kTolerance = 1e-5;  // relative, float32

// Plain: (Linear, Tanh) x 8. InPlace: (Linear, in-place ReLU) x 8: the activation
// rewrites the Linear's output, which the split backward must still handle. Skip: Plain
// with SkipStash/SkipPop pairs "a" (layer 2 to 12) and "b" (7 to 15), 20 layers, so that
// on 2, 4 and 8 stages both skips cross stages, some to another rank and, with
// interleaving, some to a later stage of the same rank. Tied: Plain whose last Linear
// uses the first one's weight tensor ("0.weight" and "14.weight").
enum class ModelKind { Plain, InPlace, Skip, Tied };

// A Linear whose weight is a tensor given to it: how a model ties two layers' weights.
class TiedLinearImpl : public torch::nn::Module {
 public:
  explicit TiedLinearImpl(const at::Tensor& weight)
      : weight_(register_parameter("weight", weight)),
        bias_(register_parameter("bias", at::zeros({weight.size(0)}))) {}
  at::Tensor forward(const at::Tensor& x) {
    return torch::nn::functional::linear(x, weight_, bias_);
  }

 private:
  at::Tensor weight_, bias_;
};
TORCH_MODULE(TiedLinear);

// Initialized from a generator of its own: tests build models on several threads at
// once, and the global generator would interleave their draws.
torch::nn::Sequential make_model(ModelKind kind = ModelKind::Plain) {
  torch::nn::Sequential model;
  torch::nn::Linear first(kWidth, kWidth);
  for (int64_t i = 0; i < kLayers / 2; ++i) {
    if (i == 0)
      model->push_back(first);
    else if (kind == ModelKind::Tied && i == kLayers / 2 - 1)
      model->push_back(TiedLinear(first->weight));
    else
      model->push_back(torch::nn::Linear(kWidth, kWidth));
    if (kind == ModelKind::InPlace)
      model->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    else
      model->push_back(torch::nn::Tanh());
    if (kind != ModelKind::Skip) continue;
    if (i == 0) model->push_back(SkipStash("a"));
    if (i == 2) model->push_back(SkipStash("b"));
    if (i == 4) model->push_back(SkipPop("a"));
    if (i == 5) model->push_back(SkipPop("b"));
  }
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.5);
  return model;
}

// `model`'s layers with `layer` put before layer `index` (the names are renumbered).
template <typename Layer>
torch::nn::Sequential inserted(const torch::nn::Sequential& model, size_t index, Layer layer) {
  torch::nn::Sequential result;
  for (size_t i = 0; i <= model->size(); ++i) {
    if (i == index) result->push_back(layer);
    if (i < model->size()) result->push_back(*(model->begin() + static_cast<std::ptrdiff_t>(i)));
  }
  return result;
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

// Every parameter of this rank's stages has the reference's gradient, and it and its
// gradient are on `device`.
void expect_gradients(const std::map<int, torch::nn::Sequential>& stages,
                      const torch::nn::Sequential& reference,
                      const c10::Device& device = c10::kCPU) {
  const auto expected = reference->named_parameters();
  for (const auto& [s, stage] : stages) {
    for (const auto& p : stage->named_parameters()) {
      SCOPED_TRACE("stage " + std::to_string(s) + " parameter " + p.key());
      ASSERT_TRUE(p.value().grad().defined());
      EXPECT_EQ(p.value().device(), device);
      EXPECT_EQ(p.value().grad().device(), device);
      EXPECT_LT(relative_error(p.value().grad().cpu(), expected[p.key()].grad()), kTolerance);
    }
  }
}

struct ScheduleCase {
  std::string name;
  int virtual_stages;
};

// What a check runs: a model, the executor's recompute option (tied models get their
// groups from find_tied_parameters), and where the stages live: the CPU, or rank r's on
// simulated accelerator r (accel::device(r)), so that every tensor between stages crosses
// from one device to another.
struct Variant {
  ModelKind model = ModelKind::Plain;
  Recompute recompute = Recompute::Never;
  bool on_accelerators = false;
};

c10::Device rank_device(const Variant& v, int rank) {
  return v.on_accelerators ? accel::device(rank) : c10::Device(c10::kCPU);
}

PipelineExecutorOptions executor_options(const Variant& v, const torch::nn::Sequential& model,
                                         int rank) {
  return PipelineExecutorOptions()
      .recompute(v.recompute)
      .tied_parameters(find_tied_parameters(*model))
      .device(rank_device(v, rank));
}

// One step of `name` with K = comm.size() ranks and M micro-batches against the reference.
void check_schedule(Communicator& comm, const ScheduleCase& c, int micro_batches,
                    const Variant& v = {}) {
  SCOPED_TRACE(c.name + " v " + std::to_string(c.virtual_stages) + " K " +
               std::to_string(comm.size()) + " M " + std::to_string(micro_batches) + " recompute " +
               to_string(v.recompute) + (v.on_accelerators ? " on accelerators" : ""));
  if (c.name == "interleaved" && micro_batches % comm.size() != 0) {
    // The one combination a generator does not make: it must refuse it, not run it.
    expect_error(
        [&] { make_pipeline_schedule(c.name, comm.size(), micro_batches, c.virtual_stages); },
        "must be a multiple of ranks");
    return;
  }
  PipelineSchedule schedule;
  ASSERT_NO_THROW(schedule =
                      make_pipeline_schedule(c.name, comm.size(), micro_batches, c.virtual_stages));
  auto model = make_model(v.model);
  auto stages = my_stages(model, schedule, comm.rank());
  if (v.model == ModelKind::Tied && comm.rank() != 0) {
    // The executor starts every copy from rank 0's value.
    torch::NoGradGuard no_grad;
    for (auto& [s, stage] : stages)
      for (auto& p : stage->named_parameters())
        if (p.key() == "14.weight") p.value().add_(1);
  }
  const c10::Device device = rank_device(v, comm.rank());
  for (auto& [s, stage] : stages) accel::to_device(stage, device);
  PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse,
                            executor_options(v, model, comm.rank()));
  const Batch batch = make_batch(24);
  const double loss = executor.train_step(batch.inputs, batch.targets);

  auto reference = make_model(v.model);
  const double expected = reference_step(reference, batch);
  EXPECT_NEAR(loss, expected, kTolerance * std::abs(expected));
  expect_gradients(stages, reference, device);

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

// ---- The matrix: every schedule x K x M x feature, on the CPU and on accelerators -------

struct MatrixCase {
  ScheduleCase schedule;
  int ranks = 2, micro_batches = 1;
  Variant variant;
};

// Every schedule of the registry (the built-ins and one that only the registry knows,
// registered by the test as a user program would), K in {2, 4}, M in {1, 3, 8}, in-process:
// on the CPU the plain model, each recompute option, skips and tied weights, and at one M
// each the features together; on simulated accelerators (every tensor between stages
// crossing devices) the plain model, and skips and tied weights with recomputation at one
// M each, to keep the run short.
std::vector<MatrixCase> matrix_cases() {
  register_sequential_schedule();
  std::vector<MatrixCase> cases;
  for (const std::string& name : schedule_names()) {
    const ScheduleCase schedule{name, schedule_entry(name).supports_virtual_stages ? 2 : 1};
    for (int ranks : {2, 4})
      for (int micro_batches : {1, 3, 8}) {
        std::vector<Variant> variants = {
            {ModelKind::Plain, Recompute::Never},      {ModelKind::Plain, Recompute::Always},
            {ModelKind::Plain, Recompute::ExceptLast}, {ModelKind::Skip, Recompute::Never},
            {ModelKind::Tied, Recompute::Never},       {ModelKind::Plain, Recompute::Never, true}};
        if (micro_batches == 8) {
          variants.push_back({ModelKind::Skip, Recompute::Always});
          variants.push_back({ModelKind::Skip, Recompute::Always, true});
        }
        if (micro_batches == 3) {
          variants.push_back({ModelKind::Skip, Recompute::ExceptLast});
          variants.push_back({ModelKind::Tied, Recompute::Always});
          variants.push_back({ModelKind::Tied, Recompute::ExceptLast, true});
        }
        for (const Variant& v : variants) cases.push_back({schedule, ranks, micro_batches, v});
      }
  }
  return cases;
}

std::string matrix_name(const ::testing::TestParamInfo<MatrixCase>& info) {
  const MatrixCase& c = info.param;
  const char* kinds[] = {"plain", "inplace", "skip", "tied"};
  std::string name =
      c.schedule.name + "_K" + std::to_string(c.ranks) + "_M" + std::to_string(c.micro_batches) +
      "_" + kinds[static_cast<int>(c.variant.model)] + "_recompute_" +
      to_string(c.variant.recompute) + (c.variant.on_accelerators ? "_accel" : "_cpu");
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

class PipelineExecutorMatrix : public ::testing::TestWithParam<MatrixCase> {};

TEST_P(PipelineExecutorMatrix, MatchesSingleProcess) {
  const MatrixCase& c = GetParam();
  run_in_process(c.ranks, [&](Communicator& comm) {
    check_schedule(comm, c.schedule, c.micro_batches, c.variant);
  });
}

INSTANTIATE_TEST_SUITE_P(EverySchedule, PipelineExecutorMatrix, ::testing::ValuesIn(matrix_cases()),
                         matrix_name);

TEST(PipelineExecutor, SplitBackwardHandlesInPlaceLayers) {
  for (int ranks : {2, 4})
    run_in_process(ranks, [](Communicator& comm) {
      check_schedule(comm, {"zb-h1", 1}, 8, {ModelKind::InPlace});
      check_schedule(comm, {"1f1b", 1}, 3, {ModelKind::InPlace});
    });
}

TEST(PipelineExecutor, OneRankRunsEveryStageLocally) {
  run_in_process(1, [](Communicator& comm) { check_schedule(comm, {"1f1b", 1}, 3); });
}

// Each tensor once: a tied weight is one parameter, and an optimizer given it twice would
// step it twice.
std::vector<at::Tensor> distinct(const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> result;
  for (const auto& p : parameters)
    if (std::none_of(result.begin(), result.end(),
                     [&](const at::Tensor& q) { return q.is_same(p); }))
      result.push_back(p);
  return result;
}

// Three SGD steps (momentum 0.9) through the executor equal three single-process steps:
// every parameter, and for a tied model every copy of the tied weight, ends up equal.
void check_sgd_steps(Communicator& comm, const Variant& v) {
  const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 3);
  auto model = make_model(v.model);
  auto stages = my_stages(model, schedule, comm.rank());
  const c10::Device device = rank_device(v, comm.rank());
  std::vector<at::Tensor> parameters;
  for (auto& [s, stage] : stages) {
    accel::to_device(stage, device);
    for (const auto& p : stage->parameters()) parameters.push_back(p);
  }
  // Made after the move: the momentum buffers live on the stage's device.
  torch::optim::SGD sgd(distinct(parameters), torch::optim::SGDOptions(0.1).momentum(0.9));
  PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse,
                            executor_options(v, model, comm.rank()));

  auto reference = make_model(v.model);
  torch::optim::SGD reference_sgd(distinct(reference->parameters()),
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
    for (const auto& p : stage->named_parameters()) {
      EXPECT_EQ(p.value().device(), device) << p.key();
      EXPECT_LT(relative_error(p.value().cpu(), expected[p.key()]), kTolerance) << p.key();
    }
  for (const auto& group : sgd.param_groups())
    for (const auto& p : group.params()) {
      const auto& state = static_cast<const torch::optim::SGDParamState&>(
          *sgd.state().at(c10::guts::to_string(p.unsafeGetTensorImpl())));
      EXPECT_EQ(state.momentum_buffer().device(), device);
    }
}

TEST(PipelineExecutor, OptimizerStepsEqualSingleProcessSgd) {
  run_in_process(2, [](Communicator& comm) { check_sgd_steps(comm, {}); });
}

// ---- Stages on devices: rank r's stages on simulated accelerator r ----------------------

// (The schedules on accelerators: PipelineExecutorMatrix's "_accel" cases.)
TEST(PipelineExecutorDevices, SplitBackwardHandlesInPlaceLayersOnSimulatedAccelerators) {
  for (int ranks : {2, 4})
    run_in_process(ranks, [](Communicator& comm) {
      check_schedule(comm, {"zb-h1", 1}, 3, {ModelKind::InPlace, Recompute::Never, true});
    });
}

TEST(PipelineExecutorDevices, OptimizerStateLivesOnTheStagesDevice) {
  run_in_process(2, [](Communicator& comm) {
    check_sgd_steps(comm, {ModelKind::Plain, Recompute::Never, true});
    check_sgd_steps(comm, {ModelKind::Tied, Recompute::Never, true});
  });
}

TEST(PipelineExecutorDevices, RejectsStagesNotOnTheirDevice) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 2);
    auto stages = my_stages(make_model(), schedule, comm.rank());
    expect_error(
        [&] {
          PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse,
                                    PipelineExecutorOptions().device(accel::device(comm.rank())));
        },
        "is on cpu, expected privateuseone:");
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
    expect_error(
        [&] { PipelineExecutor executor(missing, comm.shared_from_this(), schedule, mse); },
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

// (Recomputation, skips and tied weights under every schedule: PipelineExecutorMatrix.)

TEST(PipelineExecutor, OneRankRunsSkipsAndTiedWeightsLocally) {
  run_in_process(1, [](Communicator& comm) {
    check_schedule(comm, {"1f1b", 1}, 3, {ModelKind::Skip, Recompute::Always});
    check_schedule(comm, {"zb-h1", 1}, 3, {ModelKind::Tied});
  });
}

TEST(PipelineExecutor, RecomputeNamesRoundTrip) {
  for (Recompute r : {Recompute::Never, Recompute::Always, Recompute::ExceptLast})
    EXPECT_EQ(parse_recompute(to_string(r)), r);
  EXPECT_EQ(to_string(Recompute::ExceptLast), "except_last");
  expect_error([] { parse_recompute("sometimes"); },
               "recompute: got 'sometimes', expected one of never, always, except_last");
}

// Dropout draws from the global generator; a recomputed forward must draw the same masks,
// and leave the generator where the forward without recomputation leaves it. One rank,
// so that no other thread draws in between.
TEST(PipelineExecutor, RecomputeReplaysDropout) {
  run_in_process(1, [](Communicator& comm) {
    for (const char* name : {"gpipe", "zb-h1"}) {
      SCOPED_TRACE(name);
      const auto schedule = make_pipeline_schedule(name, 1, 3);
      std::vector<std::vector<at::Tensor>> gradients;
      std::vector<double> losses, next_draws;
      for (Recompute r : {Recompute::Never, Recompute::Always}) {
        auto model = inserted(make_model(), 3, torch::nn::Dropout(0.5));
        PipelineExecutor executor({{0, model}}, comm.shared_from_this(), schedule, mse,
                                  PipelineExecutorOptions().recompute(r));
        torch::manual_seed(7);
        const Batch batch = make_batch(24);
        losses.push_back(executor.train_step(batch.inputs, batch.targets));
        next_draws.push_back(at::rand({}).item<double>());
        gradients.emplace_back();
        for (const auto& p : model->parameters()) gradients.back().push_back(p.grad());
      }
      EXPECT_EQ(losses[0], losses[1]);
      EXPECT_EQ(next_draws[0], next_draws[1]);
      for (size_t i = 0; i < gradients[0].size(); ++i)
        EXPECT_LT(relative_error(gradients[1][i], gradients[0][i]), 1e-6) << "parameter " << i;
    }
  });
}

// Peak saved bytes on each rank after one step of `name` (K = 2, M = 8).
int64_t peak_bytes(Communicator& comm, const std::string& name, Recompute recompute) {
  const auto schedule = make_pipeline_schedule(name, comm.size(), 8);
  auto model = make_model();
  PipelineExecutor executor(my_stages(model, schedule, comm.rank()), comm.shared_from_this(),
                            schedule, mse, PipelineExecutorOptions().recompute(recompute));
  const Batch batch = make_batch(64);
  executor.train_step(batch.inputs, batch.targets);
  return executor.peak_saved_bytes();
}

TEST(PipelineExecutor, RecomputeAnd1F1BHoldFewerActivationBytesThanGPipe) {
  run_in_process(2, [](Communicator& comm) {
    const int64_t gpipe = peak_bytes(comm, "gpipe", Recompute::Never);
    const int64_t gpipe_recompute = peak_bytes(comm, "gpipe", Recompute::Always);
    const int64_t one_f_one_b = peak_bytes(comm, "1f1b", Recompute::Never);
    SCOPED_TRACE("rank " + std::to_string(comm.rank()));
    EXPECT_GT(gpipe_recompute, 0);
    EXPECT_LT(gpipe_recompute, gpipe);
    EXPECT_LT(one_f_one_b, gpipe);
  });
}

TEST(PipelineExecutor, StepStartIsWhenTheLastStepBegan) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 2);
    auto model = make_model();
    PipelineExecutor executor(my_stages(model, schedule, comm.rank()), comm.shared_from_this(),
                              schedule, mse);
    const Batch batch = make_batch(8);
    const auto before = std::chrono::steady_clock::now();
    executor.train_step(batch.inputs, batch.targets);
    const auto after = std::chrono::steady_clock::now();
    EXPECT_LE(before, executor.step_start());
    EXPECT_LE(executor.step_start(), after);
  });
}

TEST(PipelineSkip, PlainForwardUsesTheThreadsTray) {
  auto model = make_model(ModelKind::Skip);
  const at::Tensor x = make_batch(4).inputs;
  // By hand: "a" after layers 0-1, popped after layers 3-11; "b" after 3-6, popped after 13-14.
  at::Tensor h = x;
  std::vector<at::Tensor> kept;
  for (size_t i = 0; i < model->size(); ++i) {
    const auto layer = model->ptr(i);
    if (layer->as<SkipStashImpl>()) {
      kept.push_back(h);
    } else if (layer->as<SkipPopImpl>()) {
      h = h + kept.front();
      kept.erase(kept.begin());
    } else if (auto* linear = layer->as<torch::nn::LinearImpl>()) {
      h = linear->forward(h);
    } else {
      h = torch::tanh(h);
    }
  }
  EXPECT_LT(relative_error(model->forward(x), h), 1e-6);
  EXPECT_TRUE(exchange_skip_tray({}).empty());  // everything stashed was popped

  expect_error([] { SkipPop("c")->forward(at::ones({2})); },
               "SkipPop('c'): nothing is stashed under 'c'");
  SkipStash stash("d");
  stash->forward(at::ones({2}));
  expect_error([&] { stash->forward(at::ones({2})); }, "'d' is already stashed");
  exchange_skip_tray({});
  SkipPop product("e", [](const at::Tensor& x, const at::Tensor& s) { return x * s; });
  SkipStash("e")->forward(at::full({2}, 3.0));
  EXPECT_EQ(product->forward(at::full({2}, 2.0))[0].item<float>(), 6.0f);
}

TEST(PipelineExecutor, RejectsSkipsWithoutAPopOrPoppedBeforeTheirStash) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 2);
    auto stages_of = [&](torch::nn::Sequential model) {
      return my_stages(model, schedule, comm.rank());
    };
    auto no_pop = inserted(make_model(), 1, SkipStash("x"));
    expect_error(
        [&] { PipelineExecutor e(stages_of(no_pop), comm.shared_from_this(), schedule, mse); },
        "SkipStash('x') in stage 0 has no SkipPop('x') in any stage");
    auto backwards = inserted(inserted(make_model(), 12, SkipStash("y")), 1, SkipPop("y"));
    expect_error(
        [&] { PipelineExecutor e(stages_of(backwards), comm.shared_from_this(), schedule, mse); },
        "SkipPop('y') in stage 0 comes before its SkipStash('y') in stage 1");
    // 2 stages and 2 cross-stage skips: (2 + 2) * 4100 * 2 tags.
    const auto many = make_pipeline_schedule("gpipe", comm.size(), 4100);
    expect_error(
        [&] {
          PipelineExecutor e(my_stages(make_model(ModelKind::Skip), many, comm.rank()),
                             comm.shared_from_this(), many, mse);
        },
        "(stages + skip routes) * micro-batches * 2 = 32800 message tags, expected at most 32768");
  });
}

TEST(PipelineExecutor, FindsTiedParameters) {
  EXPECT_TRUE(find_tied_parameters(*make_model()).empty());
  const std::vector<std::vector<std::string>> expected = {{"0.weight", "14.weight"}};
  EXPECT_EQ(find_tied_parameters(*make_model(ModelKind::Tied)), expected);
}

TEST(PipelineExecutor, TiedWeightsStayEqualUnderSgd) {
  run_in_process(2, [](Communicator& comm) { check_sgd_steps(comm, {ModelKind::Tied}); });
}

TEST(PipelineExecutor, RejectsTiedParametersInNoStage) {
  run_in_process(2, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("1f1b", comm.size(), 2);
    auto model = make_model();
    expect_error(
        [&] {
          PipelineExecutor e(
              my_stages(model, schedule, comm.rank()), comm.shared_from_this(), schedule, mse,
              PipelineExecutorOptions().tied_parameters({{"0.weight", "99.weight"}}));
        },
        "tied parameter '99.weight' (group 0) is in no rank's stages");
  });
}

// Over the whole mpirun job, K = the world size (any size from 2 to 8).
TEST(MpiPipelineExecutor, SkipsTiedWeightsAndRecomputeMatchSingleProcess) {
  run_mpi([](Communicator& comm) {
    check_schedule(comm, {"1f1b", 1}, 4, {ModelKind::Skip, Recompute::Always});
    check_schedule(comm, {"zb-h1", 1}, 4, {ModelKind::Skip, Recompute::ExceptLast});
    check_schedule(comm, {"interleaved", 2}, 2 * comm.size(), {ModelKind::Tied, Recompute::Always});
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
