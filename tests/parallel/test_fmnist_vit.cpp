// fmnist-vit cut into two pipeline stages, on two ranks, two CPU workers of one process or
// two simulated accelerators, trains to the losses and parameters of one process.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "strata/accel/device.h"
#include "strata/accel/to_device.h"
#include "strata/core/models/fmnist_vit.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"

namespace strata::parallel {
namespace {

using testing::run_in_process;

constexpr double kTolerance = 1e-5;  // relative, float32
constexpr int kSteps = 3;

torch::nn::Sequential seeded_vit() {
  torch::manual_seed(11);
  return core::make_fmnist_vit();
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(logits, labels);
}

struct Batch {
  at::Tensor images, labels;
};
Batch make_batch(uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {at::randn({16, 1, 28, 28}, gen), at::randint(10, {16}, gen)};
}

torch::optim::SGD make_sgd(const std::vector<at::Tensor>& parameters) {
  return torch::optim::SGD(parameters, torch::optim::SGDOptions(0.05).momentum(0.9));
}

// kSteps SGD steps: the losses and the parameters after (on the CPU, whole-model names).
struct Trained {
  std::vector<double> losses;
  std::map<std::string, at::Tensor> parameters;
};

Trained train_one_process() {
  torch::nn::Sequential model = seeded_vit();
  auto sgd = make_sgd(model->parameters());
  Trained t;
  for (int step = 0; step < kSteps; ++step) {
    const Batch batch = make_batch(100 + step);
    sgd.zero_grad();
    const at::Tensor loss = cross_entropy(model->forward(batch.images), batch.labels);
    loss.backward();
    sgd.step();
    t.losses.push_back(loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) t.parameters[p.key()] = p.value().detach();
  return t;
}

Trained train_pipeline(Communicator& comm, int pp, PipelineParallelOptions options) {
  ProcessGrid grid(comm.shared_from_this(), ProcessGridOptions().pipeline_parallel(pp));
  PipelineParallel pipe(seeded_vit(), grid, cross_entropy, make_batch(0).images,
                        options.micro_batches(4));
  auto sgd = make_sgd(pipe.parameters());
  Trained t;
  for (int step = 0; step < kSteps; ++step) {
    const Batch batch = make_batch(100 + step);
    sgd.zero_grad();
    t.losses.push_back(pipe.train_step(batch.images, batch.labels, &sgd));
  }
  for (const auto& p : pipe.local_module().named_parameters())
    t.parameters[p.key()] = p.value().detach().cpu();
  return t;
}

void expect_same_training(const Trained& actual, const Trained& expected) {
  ASSERT_EQ(actual.losses.size(), expected.losses.size());
  for (size_t i = 0; i < expected.losses.size(); ++i)
    EXPECT_NEAR(actual.losses[i], expected.losses[i], kTolerance * expected.losses[i])
        << "step " << i;
  ASSERT_FALSE(actual.parameters.empty());
  for (const auto& [name, value] : actual.parameters) {
    ASSERT_TRUE(expected.parameters.count(name)) << name;
    const at::Tensor& want = expected.parameters.at(name);
    EXPECT_LT((value - want).norm().item<double>(),
              kTolerance * std::max(1.0, want.norm().item<double>()))
        << name;
  }
}

TEST(FmnistVitPipeline, TwoRanksTrainLikeOneProcess) {
  const Trained reference = train_one_process();
  std::vector<Trained> ranks(2);
  run_in_process(2, [&](Communicator& comm) {
    ranks[static_cast<size_t>(comm.rank())] = train_pipeline(comm, 2, {});
  });
  for (const Trained& rank : ranks) expect_same_training(rank, reference);
}

TEST(FmnistVitPipeline, TwoDevicesOfOneProcessTrainLikeOneProcess) {
  const Trained reference = train_one_process();
  for (const bool accelerators : {false, true}) {
    SCOPED_TRACE(accelerators ? "accel:0,accel:1" : "cpu,cpu");
    const std::vector<c10::Device> devices =
        accelerators ? std::vector<c10::Device>{accel::device(0), accel::device(1)}
                     : std::vector<c10::Device>{c10::kCPU, c10::kCPU};
    run_in_process(1, [&](Communicator& comm) {
      expect_same_training(
          train_pipeline(comm, 1,
                         PipelineParallelOptions().devices(devices).move_module(
                             [](torch::nn::Module& module, const c10::Device& device) {
                               accel::to_device(module, device);
                             })),
          reference);
    });
  }
}

}  // namespace
}  // namespace strata::parallel
