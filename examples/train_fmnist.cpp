// The main job: fmnist-mlp, fmnist-cnn or fmnist-vit on Fashion-MNIST, data parallel, pipelined, or
// both.
//
//   mpirun -np 2 build/examples/train_fmnist --model cnn --epochs 8             # 2 replicas
//   mpirun -np 2 build/examples/train_fmnist --model cnn --pp 2 --micro-batches 4  # 2 stages
//   mpirun -np 4 build/examples/train_fmnist --pp 2 --schedule zb-h1   # 2 stages x 2 replicas
//   build/tools/strata-run -n 2 build/examples/train_fmnist --model mlp  # without mpirun (Gloo)
//   build/examples/train_fmnist --pp 2 --devices accel:nvdla,accel:shidiannao  # one process
//
// With --pp 1 every rank holds a replica, trains on its shard of each global batch and
// DistributedDataParallel averages the gradients. With --pp P the model is cut into P
// stages run by a pipeline schedule, and the world size / P replicas of each stage average
// their gradients. Rank 0 prints progress, writes metrics and checkpoints (in the whole
// model's names, so a run resumes with any --pp). Without mpirun it trains in one process.
// --timeout and --hang-report steer the watchdog (docs/reliability.md).
#include <torch/torch.h>

#include <cmath>

#include <spdlog/spdlog.h>

#include "strata/core/data/distributed_sampler.h"
#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/memory.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/pipeline_flags.h"
#include "strata/programs/precision_flags.h"
#include "strata/programs/reliability_flags.h"
#include "strata/programs/step_flags.h"
#include "strata/programs/training_run.h"

namespace {

using strata::core::FashionMnist;
using strata::parallel::Communicator;

struct Config {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string model = "cnn";
  int epochs = 8;
  int64_t max_steps = 0;  // 0: no limit
  int64_t batch = 256;    // global
  double lr = 0.05;
  double momentum = 0.9;
  uint64_t seed = 0;
  int threads = strata::core::default_threads_per_rank();
  bool log_all_ranks = false;
  strata::programs::TrainingRunFlags run;
  strata::programs::ReliabilityFlags reliability;
  strata::programs::PipelineFlags pipeline;
  strata::programs::StepFlags step;
};

void add_flags(CLI::App& app, Config& c) {
  using namespace strata::programs;  // NOLINT(google-build-using-namespace): the flag ranges
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
  app.add_option("--model", c.model, "Model: mlp, cnn or vit")
      ->check(CLI::IsMember({"mlp", "cnn", "vit"}));
  integer_range(
      app.add_option("--epochs", c.epochs, "Epochs (also the learning-rate schedule's length)"), 1,
      kMaxEpochs);
  integer_range(
      app.add_option("--max-steps", c.max_steps, "Stop after this many steps (0: no limit)"), 0,
      kMaxSteps);
  integer_range(
      app.add_option("--batch", c.batch, "Global batch size, split evenly over the ranks"), 1,
      kFashionMnistTrainImages);
  positive_real(app.add_option("--lr", c.lr, "Peak learning rate"), kMaxLearningRate);
  real_range(app.add_option("--momentum", c.momentum, "SGD momentum"), 0, 1);
  integer_range(app.add_option("--seed", c.seed, "Seed for initialization and shuffling"), 0,
                kMaxSeed);
  threads_range(app.add_option("--threads", c.threads, "Threads per rank (LibTorch and BLAS)"));
  app.add_flag("--log-all-ranks", c.log_all_ranks, "Log from every rank, not only rank 0");
  strata::programs::add_training_run_flags(app, c.run);
  strata::programs::add_reliability_flags(app, c.reliability);
  strata::programs::add_pipeline_flags(app, c.pipeline);
  strata::programs::add_precision_flags(app, c.pipeline.options);
  c.step.lr_schedule = "cosine";  // train_fmnist's default schedule
  strata::programs::add_step_flags(app, c.step);
}

// Sum of a scalar over all ranks.
double sum_over_ranks(Communicator& comm, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.allreduce(t)->wait();
  return t.item<double>();
}

// Accuracy on the test set: each replica scores a strided shard (the first stage's rank
// counts, since every rank of a pipeline gets the same outputs), the counts are summed.
double test_accuracy(strata::parallel::HybridParallel& model, const FashionMnist& test) {
  const auto& grid = model.grid();
  const at::Tensor shard =
      at::arange(model.data_parallel_rank(), test.size(), model.data_parallel_size(), at::kLong);
  double correct = 0;
  for (int64_t begin = 0; begin < shard.numel(); begin += 1000) {
    const at::Tensor idx = shard.slice(0, begin, std::min(begin + 1000, shard.numel()));
    const at::Tensor logits = model.evaluate(test.images.index_select(0, idx));
    correct += logits.argmax(1).eq(test.labels.index_select(0, idx)).sum().item<double>();
  }
  if (grid.pipeline_rank() != 0) correct = 0;
  return sum_over_ranks(*grid.world(), correct) / static_cast<double>(test.size());
}

int train(const Config& c, const std::string& configuration) {
  // The job, the watchdog, logging, threads, checkpoints, metrics and progress.
  strata::programs::TrainingRun run(configuration, c.run, c.reliability, c.pipeline, c.threads,
                                    c.log_all_ranks);
  const int ranks = run.world()->size();
  const int pp = c.pipeline.options.pipeline_parallel();
  const int64_t local_batch = run.replica_batch(c.batch);
  const int replicas = c.pipeline.in_process(ranks) ? 1 : ranks / pp;

  const FashionMnist train_set =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Train);
  const FashionMnist test_set =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Test);

  strata::core::seed_everything(c.seed);
  const auto cross_entropy = [](const at::Tensor& logits, const at::Tensor& labels) {
    return torch::nn::functional::cross_entropy(logits, labels);
  };
  strata::parallel::HybridParallelOptions options = c.pipeline.options;
  c.step.apply(options);
  strata::parallel::HybridParallel model(strata::core::make_fmnist_model(c.model), run.world(),
                                         cross_entropy, train_set.images.slice(0, 0, local_batch),
                                         options);
  torch::optim::SGD optimizer(model.parameters(),
                              torch::optim::SGDOptions(c.lr).momentum(c.momentum));
  int64_t step = run.resume(model, optimizer);

  strata::core::DistributedSampler sampler(strata::core::DistributedSamplerOptions(train_set.size())
                                               .rank(model.data_parallel_rank())
                                               .world_size(replicas)
                                               .seed(c.seed));
  // One optimizer step takes --accumulate micro-steps of the replica's batch.
  const int64_t step_samples = local_batch * c.step.accumulate;
  const int64_t steps_per_epoch = sampler.local_size() / step_samples;
  STRATA_CHECK(steps_per_epoch > 0, "--batch ", c.batch, " x --accumulate ", c.step.accumulate,
               " is larger than the training set");
  const int64_t schedule_steps = steps_per_epoch * c.epochs;
  const int64_t last_step =
      c.max_steps > 0 ? std::min(schedule_steps, c.max_steps) : schedule_steps;
  if (pp == 1) {
    spdlog::info("training fmnist-{} on {} rank(s) x {} thread(s): {} steps of global batch {}",
                 c.model, ranks, c.threads, last_step - step, c.batch);
  } else {
    const strata::parallel::PipelineParallelOptions& pipe = c.pipeline.options.pipeline();
    spdlog::info(
        "training fmnist-{} on {} pipeline stage(s) x {} replica(s) x {} thread(s), "
        "schedule {} with {} micro-batches: {} steps of global batch {}",
        c.model, pp, replicas, c.threads, pipe.schedule(), pipe.micro_batches(), last_step - step,
        c.batch);
  }

  run.start(model, optimizer, step, last_step, c.step.step_batch(c.batch),
            /*max_warmup_steps=*/20);
  const nlohmann::json checkpoint_extra = {{"model", c.model}};
  at::Tensor epoch_indices;
  int64_t loaded_epoch = -1;
  for (; step < last_step; ++step) {
    const int64_t epoch = step / steps_per_epoch;
    if (epoch != loaded_epoch) {
      sampler.set_epoch(epoch);
      epoch_indices = sampler.indices();
      loaded_epoch = epoch;
    }
    const int64_t first = (step % steps_per_epoch) * step_samples;
    const at::Tensor idx = epoch_indices.slice(0, first, first + step_samples);
    const double lr = strata::programs::learning_rate(c.step, c.lr, step, schedule_steps);
    strata::programs::set_learning_rate(optimizer, lr);
    run.begin_step(step);
    const double loss = model.train_step(train_set.images.index_select(0, idx),
                                         train_set.labels.index_select(0, idx), optimizer);
    run.end_step(step, loss, strata::programs::step_fields(model, lr, {{"epoch", epoch}}), epoch);
    if (run.checkpoint_due(step + 1)) run.save(step + 1, checkpoint_extra);
  }
  // Wall-clock throughput, everything in the loop included, as PyTorch peers measure it
  // (bench/bench_data_parallel.py compares them).
  const int64_t measured_steps = run.measured_steps();
  const double samples_per_s =
      measured_steps > 0 ? static_cast<double>(measured_steps * c.step.step_batch(c.batch)) /
                               run.measured_wall_seconds()
                         : 0.0;
  run.save_final(last_step, checkpoint_extra);
  const std::vector<double> idle = run.finish();
  const nlohmann::json memory = strata::programs::memory_fields(model, optimizer, *run.world());

  const double accuracy = test_accuracy(model, test_set);
  spdlog::info("done: test accuracy {:.2f}%, train loss {:.4f}, {:.0f} samples/s", 100 * accuracy,
               run.last_loss(), samples_per_s);
  nlohmann::json final_record = {{"test_accuracy", accuracy},
                                 {"train_loss", run.last_loss()},
                                 {"samples_per_s", samples_per_s},
                                 {"steps", last_step},
                                 {"world_size", ranks},
                                 {"threads", c.threads},
                                 {"model", c.model},
                                 {"batch", c.batch},
                                 {"pp", pp},
                                 {"zero", c.step.zero},
                                 {"accumulate", c.step.accumulate},
                                 {"step_batch", c.step.step_batch(c.batch)},
                                 {"clip_grad_norm", c.step.clip_grad_norm}};
  final_record.update(memory);
  strata::programs::add_pipeline_fields(final_record, c.pipeline, idle);
  run.add_simulated_fields(final_record);
  run.metrics().write_final(final_record);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config config;
    CLI::App app{
        "Data-parallel and pipelined training of fmnist-mlp, fmnist-cnn or fmnist-vit on "
        "Fashion-MNIST.\nRun under mpirun -np N for N ranks, or alone for one process."};
    strata::programs::configure_cli(app);
    add_flags(app, config);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    strata::programs::check_pipeline_flags(app, config.pipeline);
    strata::programs::check_step_flags(config.step, config.pipeline);
    strata::core::check_fits(
        "--batch " + std::to_string(config.batch) + " of --model " + config.model,
        strata::core::fmnist_training_bytes(config.model, config.batch));
    return train(config, strata::programs::configuration_text(app));
  });
}
