// Small pieces: models, progress, timer, logging, seeding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "strata/core/logging.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/progress.h"
#include "strata/core/random.h"
#include "strata/core/timer.h"
#include "test_util.h"

using namespace strata::core;
using strata::test::error_of;
using testing::HasSubstr;

namespace {
int64_t parameter_count(const torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}
}  // namespace

TEST(Models, FmnistShapesAndSizes) {
  const at::Tensor x = torch::randn({2, 1, 28, 28});
  auto mlp = make_fmnist_mlp();
  EXPECT_EQ(mlp->forward(x).sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(parameter_count(*mlp), 784 * 1024 + 1024 + 5 * (1024 * 1024 + 1024) + 1024 * 10 + 10);
  EXPECT_EQ(mlp->size(), 14u);  // Flatten, 6 x [Linear, ReLU], Linear
  auto cnn = make_fmnist_cnn();
  EXPECT_EQ(cnn->forward(x).sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(parameter_count(*cnn), (16 * 25 + 16) + (32 * 16 * 25 + 32) + (1568 * 10 + 10));
  EXPECT_EQ(make_fmnist_model("cnn")->size(), 8u);
  EXPECT_EQ(error_of([] { make_fmnist_model("rnn"); }),
            "model 'rnn': unknown, expected one of: mlp, cnn, vit");
}

TEST(Progress, PrintsWithoutCrashing) {
  ProgressReporter progress(10, 3, true);
  for (int64_t step = 1; step <= 10; ++step) progress.update(step, 0, 1.0 / step, 256);
  ProgressReporter quiet(10, 1, false);
  quiet.update(1, 0, 0.5, 256);
  ProgressReporter resumed(100, 10, true);  // a run resumed at step 50
  resumed.update(51, 2, 0.25, 256);
  resumed.update(60, 2, 0.25, 256);
  EXPECT_THAT(error_of([] { ProgressReporter(10, 0, true); }), HasSubstr("log_every 0"));
}

TEST(Timer, CountsUp) {
  Stopwatch watch;
  const double a = watch.seconds();
  const double b = watch.seconds();
  EXPECT_GE(a, 0.0);
  EXPECT_GE(b, a);
  watch.reset();
  EXPECT_LT(watch.seconds(), 1.0);
}

TEST(Logging, OtherRanksOnlyWarn) {
  init_logging(1);
  EXPECT_EQ(spdlog::get_level(), spdlog::level::warn);
  init_logging(1, true);
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
  init_logging(0);
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
}

TEST(Random, SeedRepeats) {
  seed_everything(17);
  const at::Tensor a = torch::rand({4});
  seed_everything(17);
  EXPECT_TRUE(torch::equal(a, torch::rand({4})));
}
