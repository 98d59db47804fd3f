// TrainingRun in one process (a world of one): the metrics records every --log-every steps
// with the loss averaged over the window, the checkpoint cadence and the last checkpoint,
// resuming from the newest checkpoint, and a resume refused for another model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "core/test_util.h"
#include "strata/core/checkpoint.h"
#include "strata/programs/training_run.h"

namespace strata::programs {
namespace {

using strata::test::error_of;
using strata::test::TempDir;

struct TinyRun {
  TrainingRunFlags flags;
  ReliabilityFlags reliability;
  PipelineFlags pipeline;
  TinyRun() { reliability.control_plane.timeout(0); }  // no watchdog thread in a unit test

  // Trains a linear model to `last_step` with replica loss `step` at each step; returns the
  // step it started from.
  int64_t train(int64_t last_step, const nlohmann::json& extra) {
    TrainingRun run("test configuration", flags, reliability, pipeline, /*threads=*/1);
    torch::manual_seed(0);
    const at::Tensor x = torch::randn({4, 2});
    parallel::HybridParallel model(
        torch::nn::Sequential(torch::nn::Linear(2, 1)), run.world(),
        [](const at::Tensor& y, const at::Tensor& t) { return torch::mse_loss(y, t); }, x,
        pipeline.options);
    torch::optim::SGD optimizer(model.parameters(), 0.1);
    const int64_t first = run.resume(model, optimizer, extra);
    int64_t step = first;
    run.start(model, optimizer, step, last_step, /*samples_per_step=*/4, /*max_warmup_steps=*/2);
    for (; step < last_step; ++step) {
      run.begin_step(step);
      model.train_step(x, torch::zeros({4, 1}), optimizer);
      run.end_step(step, static_cast<double>(step), {{"lr", 0.1}});
      if (run.checkpoint_due(step + 1)) run.save(step + 1, extra);
    }
    run.save_final(last_step, extra);
    EXPECT_TRUE(run.finish().empty());  // no pipeline
    EXPECT_EQ(run.measured_steps(),
              last_step - first - std::min<int64_t>(2, (last_step - first) / 10));
    run.metrics().write_final({{"train_loss", run.last_loss()}});
    return first;
  }
};

std::vector<nlohmann::json> records(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(strata::test::read_file(path));
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(TrainingRun, LogsEveryWindowAndCheckpointsOnItsCadence) {
  TempDir dir;
  TinyRun run;
  run.flags.checkpoint_dir = dir / "ckpt";
  run.flags.checkpoint_every = 4;
  run.flags.metrics_out = dir / "metrics.jsonl";
  run.flags.log_every = 3;
  EXPECT_EQ(run.train(10, {{"model", "tiny"}}), 0);

  // Steps 1-3, 4-6, 7-9 and the last, 10: the mean of each window's losses 0, 1, ... 9.
  const std::vector<nlohmann::json> lines = records(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 5u);
  const std::vector<std::pair<int, double>> expected = {{3, 1.0}, {6, 4.0}, {9, 7.0}, {10, 9.0}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(
        lines[i],
        nlohmann::json({{"step", expected[i].first}, {"loss", expected[i].second}, {"lr", 0.1}}));
  }
  EXPECT_EQ(lines[4]["train_loss"], 9.0);
  EXPECT_EQ(lines[4]["event"], "final");

  // Every 4 steps, and the last one; each records the extra.
  std::vector<std::string> saved;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "ckpt"))
    saved.push_back(entry.path().filename().string());
  std::sort(saved.begin(), saved.end());
  EXPECT_EQ(saved, (std::vector<std::string>{"step-00000004", "step-00000008", "step-00000010"}));
  EXPECT_EQ(core::CheckpointReader(dir / "ckpt/step-00000010").extra(),
            nlohmann::json({{"model", "tiny"}}));
}

TEST(TrainingRun, SavesTheLastStepOnceWhenTheCadenceHitsIt) {
  TempDir dir;
  TinyRun run;
  run.flags.checkpoint_dir = dir / "ckpt";
  run.flags.checkpoint_every = 5;
  run.train(10, nlohmann::json::object());
  EXPECT_TRUE(std::filesystem::exists(dir / "ckpt/step-00000005"));
  EXPECT_TRUE(std::filesystem::exists(dir / "ckpt/step-00000010"));
}

TEST(TrainingRun, ResumesFromTheNewestCheckpointOfTheSameModel) {
  TempDir dir;
  TinyRun run;
  run.flags.checkpoint_dir = dir / "ckpt";
  run.flags.checkpoint_every = 3;
  run.flags.resume = "auto";
  EXPECT_EQ(run.train(6, {{"model", "tiny"}}), 0);  // nothing to resume from yet
  EXPECT_EQ(run.train(8, {{"model", "tiny"}}), 6);
  const std::string error = error_of([&] { run.train(9, {{"model", "other"}}); });
  EXPECT_EQ(error, "--resume " + (dir / "ckpt/step-00000008") +
                       ": saved with model \"tiny\", this run has \"other\"");
}

TEST(TrainingRun, AFreshRunNeverWritesOverAnotherRunsCheckpoints) {
  TempDir dir;
  TinyRun first;
  first.flags.checkpoint_dir = dir / "ckpt";
  first.train(4, {{"model", "tiny"}});
  const std::string saved = strata::test::read_file(dir / "ckpt/step-00000004/tensors.bin");
  TinyRun fresh;
  fresh.flags.checkpoint_dir = dir / "ckpt";
  EXPECT_EQ(error_of([&] {
              fresh.train(4, {{"model", "other"}});
            }),
            "--checkpoint-dir " + (dir / "ckpt") + ": holds " + (dir / "ckpt/step-00000004") +
                " from an earlier run; pass --resume to continue it or --overwrite to replace it");
  EXPECT_EQ(strata::test::read_file(dir / "ckpt/step-00000004/tensors.bin"), saved);
  fresh.flags.overwrite = true;
  EXPECT_EQ(fresh.train(4, {{"model", "other"}}), 0);
  EXPECT_EQ(core::CheckpointReader(dir / "ckpt/step-00000004").extra(),
            nlohmann::json({{"model", "other"}}));
}

TEST(TrainingRun, ChecksItsFlags) {
  TinyRun run;
  run.flags.checkpoint_every = 5;
  EXPECT_EQ(error_of([&] { run.train(1, nlohmann::json::object()); }),
            "--checkpoint-every needs --checkpoint-dir");
}

TEST(TrainingRun, RefusesAnOutputItCannotWriteBeforeAnyWork) {
  TempDir dir;
  strata::test::write_file(dir / "file", "x");
  TinyRun run;
  run.flags.metrics_out = dir.path();
  EXPECT_EQ(error_of([&] { run.train(1, nlohmann::json::object()); }),
            "--metrics-out " + dir.path() + ": is a directory, expected a file name");
  run.flags.metrics_out = "";
  run.flags.checkpoint_dir = dir / "file/ckpt";
  EXPECT_EQ(
      error_of([&] { run.train(1, nlohmann::json::object()); }),
      "--checkpoint-dir " + (dir / "file/ckpt") + ": " + (dir / "file") + " is not a directory");
  run.flags.checkpoint_dir = "";
  run.reliability.control_plane.hang_report(dir / "missing/hang.json");
  EXPECT_EQ(
      error_of([&] { run.train(1, nlohmann::json::object()); }),
      "--hang-report " + (dir / "missing/hang.json") + ": no such directory " + (dir / "missing"));
}

}  // namespace
}  // namespace strata::programs
