// Sparse fmnist-mlp: N:M sparse training (SR-STE or BDWP), or dense training with
// magnitude pruning (one-shot then fine-tuning, or gradual), on Fashion-MNIST in one
// process. Prints the test accuracy and the mean training-step time; a pruned model is
// then converted to SparseLinear layers, checked again, and its inference timed against
// the dense layers in the same run.
//
//   build/examples/sparse_fmnist --mode bdwp --nm 2:8 --epochs 3
//   build/examples/sparse_fmnist --mode bdwp --nm 2:8 --mask-every 10 --dense-grad-every 10
//   build/examples/sparse_fmnist --mode prune --structure 1x16 --sparsity 0.9 --schedule gradual
//
// docs/sparse.md, "Pruning and sparse training".
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/logging.h"
#include "strata/core/metrics.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/output_files.h"
#include "strata/core/progress.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/sparse/nm_sparse_linear.h"
#include "strata/sparse/pruning.h"

namespace {

namespace sp = strata::sparse;
using strata::core::classification_accuracy;
using strata::core::FashionMnist;

struct Config {
  std::string data_dir = strata::core::kFashionMnistDir;
  std::string mode = "bdwp";  // dense | srste | bdwp | prune
  std::string nm = "2:8";
  int64_t mask_every = 1;
  int64_t dense_grad_every = 1;
  std::string structure = "1x16";
  double sparsity = 0.9;
  std::string schedule = "gradual";  // oneshot | gradual
  int epochs = 3;
  int64_t max_steps = 0;
  int64_t batch = 256;
  double lr = 0.05;
  uint64_t seed = 0;
  int threads = 1;
  int64_t log_every = 50;
  std::string metrics_out;
  int64_t test_samples = 10000;
};

void add_flags(CLI::App& app, Config& c) {
  using namespace strata::programs;  // NOLINT(google-build-using-namespace): the flag ranges
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
  app.add_option("--mode", c.mode, "dense, srste or bdwp (N:M sparse training), or prune")
      ->check(CLI::IsMember({"dense", "srste", "bdwp", "prune"}));
  app.add_option("--nm", c.nm, "N:M pattern of sparse training, e.g. 2:8");
  integer_range(app.add_option("--mask-every", c.mask_every,
                               "N:M training: steps between mask updates (1: every step)"),
                1, kMaxSteps);
  integer_range(app.add_option("--dense-grad-every", c.dense_grad_every,
                               "N:M training: steps between dense weight gradients, the others "
                               "only at the kept weights (1: every step, 0: never)"),
                0, kMaxSteps);
  app.add_option("--structure", c.structure,
                 "What --mode prune keeps: unstructured, a block <in>x<out> (1x16, 4x1) or N:M");
  real_range(app.add_option("--sparsity", c.sparsity, "Target sparsity of --mode prune"), 0, 1);
  app.add_option("--schedule", c.schedule,
                 "oneshot (prune after 2/3 of the steps, then fine-tune) or gradual")
      ->check(CLI::IsMember({"oneshot", "gradual"}));
  integer_range(app.add_option("--epochs", c.epochs, "Epochs"), 1, kMaxEpochs);
  integer_range(
      app.add_option("--max-steps", c.max_steps, "Stop after this many steps (0: no limit)"), 0,
      kMaxSteps);
  integer_range(app.add_option("--batch", c.batch, "Batch size"), 1, kFashionMnistTrainImages);
  positive_real(app.add_option("--lr", c.lr, "SGD learning rate (momentum 0.9)"), kMaxLearningRate);
  integer_range(app.add_option("--seed", c.seed, "Seed for initialization and shuffling"), 0,
                kMaxSeed);
  threads_range(app.add_option("--threads", c.threads, "Threads (LibTorch and BLAS)"));
  integer_range(app.add_option("--log-every", c.log_every, "Steps between progress lines"), 1,
                kMaxSteps);
  app.add_option("--metrics-out", c.metrics_out, "Write the loss curve as JSON lines here");
  integer_range(app.add_option("--test-samples", c.test_samples,
                               "Test images scored and timed (the first N of the 10,000)"),
                1, kFashionMnistTestImages);
}

// Median seconds of inference over the test set in batches of `batch`, `runs` times.
double inference_seconds(torch::nn::Sequential& model, const FashionMnist& test, int64_t batch,
                         int runs) {
  torch::NoGradGuard no_grad;
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    strata::core::Stopwatch clock;
    for (int64_t begin = 0; begin + batch <= test.size(); begin += batch)
      model->forward(test.images.slice(0, begin, begin + batch));
    times.push_back(clock.seconds());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// He initialisation (normal, fan in, ReLU gain) of every Linear: LibTorch's default
// (uniform, std 1/sqrt(3 fan_in)) shrinks the signal 2.4x per ReLU layer, and a 2:8 mask
// of a uniform weight keeps only about half of its variance, so through 6 sparse layers
// the logits start near zero and N:M training stalls at the start. With He's normal
// weights the 2 largest of 8 keep about 80% of the variance.
void he_init(torch::nn::Sequential& model) {
  torch::NoGradGuard no_grad;
  for (auto& module : model->modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      torch::nn::init::kaiming_normal_(linear->weight, 0.0, torch::kFanIn, torch::kReLU);
      linear->bias.zero_();
    }
  }
}

// The SparseLinear format that runs a pruning structure best.
sp::SparseLinearOptions inference_format(const sp::PruneStructure& s) {
  using Kind = sp::PruneStructure::Kind;
  sp::SparseLinearOptions o;
  if (s.kind == Kind::NM) return o.format(sp::SparseFormat::NM).n(s.n).m(s.m);
  if (s.kind == Kind::Unstructured) return o.format(sp::SparseFormat::Csr);
  const bool int8 = s.block.in % 4 == 0 && s.block.out == 1;
  return o.format(int8 ? sp::SparseFormat::Int8Block : sp::SparseFormat::Block).block(s.block);
}

int run(const Config& c) {
  strata::core::init_logging(0, false);
  strata::core::set_num_threads(c.threads);
  const FashionMnist train_set =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Train);
  FashionMnist test_set =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Test);
  test_set.images = test_set.images.slice(0, 0, c.test_samples);
  test_set.labels = test_set.labels.slice(0, 0, c.test_samples);
  strata::core::seed_everything(c.seed);

  torch::nn::Sequential model = strata::core::make_fmnist_mlp();
  he_init(model);
  nlohmann::json result{{"mode", c.mode}, {"threads", c.threads}, {"batch", c.batch}};
  const bool nm_training = c.mode == "srste" || c.mode == "bdwp";
  if (nm_training) {
    const sp::PruneStructure nm = sp::PruneStructure::parse(c.nm);
    STRATA_CHECK(nm.kind == sp::PruneStructure::Kind::NM, "--nm ", c.nm,
                 ": expected N:M, e.g. 2:8");
    int replaced = 0;
    model = sp::with_nm_sparse_training(model,
                                        sp::NMSparseLinearOptions(1, 1)
                                            .n(nm.n)
                                            .m(nm.m)
                                            .method(sp::parse_nm_training(c.mode))
                                            .mask_every(c.mask_every)
                                            .dense_grad_every(c.dense_grad_every),
                                        /*keep_last_dense=*/true, &replaced);
    spdlog::info(
        "{} N:M sparse training with {}: {} of 7 Linear layers sparse (the classifier "
        "stays dense)",
        c.mode, c.nm, replaced);
    result["nm"] = c.nm;
    result["mask_every"] = c.mask_every;
    result["dense_grad_every"] = c.dense_grad_every;
  }

  const int64_t steps_per_epoch = train_set.size() / c.batch;
  const int64_t total = steps_per_epoch * c.epochs;
  const int64_t last_step = c.max_steps > 0 ? std::min(total, c.max_steps) : total;

  // Pruning: the classifier stays dense; gradual prunes from 10% to 60% of the steps,
  // one-shot prunes at 2/3 and fine-tunes for the rest.
  std::optional<sp::GradualPruner> pruner;
  sp::PruneOptions prune_options;
  if (c.mode == "prune") {
    const std::string classifier = std::to_string(model->size() - 1) + ".weight";
    prune_options.structure(sp::PruneStructure::parse(c.structure))
        .sparsity(c.sparsity)
        .skip({classifier});
    const int64_t start = c.schedule == "gradual" ? last_step / 10 : last_step * 2 / 3;
    const int64_t end =
        c.schedule == "gradual" ? std::max(start + 1, last_step * 6 / 10) : start + 1;
    pruner.emplace(
        *model,
        sp::GradualPruningOptions()
            .prune(prune_options)
            .start_step(start)
            .end_step(end)
            .every(c.schedule == "gradual" ? std::max<int64_t>(1, (end - start) / 20) : end - start)
            .initial_sparsity(c.schedule == "gradual" ? 0.0 : c.sparsity));
    spdlog::info("pruning {} to {} sparsity ({}), steps {}..{}", c.structure, c.sparsity,
                 c.schedule, start, end);
    result["structure"] = c.structure;
    result["sparsity"] = c.sparsity;
    result["schedule"] = c.schedule;
  }

  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(c.lr).momentum(0.9));
  strata::core::MetricsWriter metrics(c.metrics_out);
  strata::core::ProgressReporter progress(last_step, c.log_every, true);
  const int64_t warmup = std::min<int64_t>(10, last_step / 10);
  double train_seconds = 0, loss_sum = 0;
  int64_t loss_count = 0;
  at::Tensor order;
  for (int64_t step = 0; step < last_step; ++step) {
    if (step % steps_per_epoch == 0) order = at::randperm(train_set.size());
    const at::Tensor idx =
        order.slice(0, (step % steps_per_epoch) * c.batch, (step % steps_per_epoch + 1) * c.batch);
    const at::Tensor x = train_set.images.index_select(0, idx);
    const at::Tensor y = train_set.labels.index_select(0, idx);
    strata::core::Stopwatch clock;
    optimizer.zero_grad();
    const at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    optimizer.step();
    if (pruner) pruner->step(step);
    if (step >= warmup) train_seconds += clock.seconds();
    loss_sum += loss.item<double>();
    ++loss_count;
    if ((step + 1) % c.log_every == 0 || step + 1 == last_step) {
      metrics.write({{"step", step + 1}, {"loss", loss_sum / double(loss_count)}});
      progress.update(step + 1, step / steps_per_epoch, loss_sum / double(loss_count),
                      loss_count * c.batch);
      loss_sum = 0;
      loss_count = 0;
    }
  }
  result["steps"] = last_step;
  result["step_ms"] = 1e3 * train_seconds / double(std::max<int64_t>(1, last_step - warmup));
  result["test_accuracy"] = classification_accuracy(model, test_set);

  if (pruner) {
    const auto names = sp::prunable_weights(*model, prune_options.skip());
    result["measured_sparsity"] = sp::sparsity_of(*model, names);
    auto sparse_model =
        sp::to_sparse_linear(model, pruner->masks(), inference_format(prune_options.structure()));
    result["sparse_test_accuracy"] = classification_accuracy(sparse_model, test_set);
    const double dense_s = inference_seconds(model, test_set, 128, 5);
    const double sparse_s = inference_seconds(sparse_model, test_set, 128, 5);
    result["inference_dense_ms_per_batch"] = 1e3 * dense_s / double(test_set.size() / 128);
    result["inference_sparse_ms_per_batch"] = 1e3 * sparse_s / double(test_set.size() / 128);
    result["inference_speedup"] = dense_s / sparse_s;
    spdlog::info(
        "inference over {} test images, batch 128: dense {:.3f} s, sparse {:.3f} s ({:.2f}x)",
        test_set.size(), dense_s, sparse_s, dense_s / sparse_s);
  }
  spdlog::info("test accuracy {:.2f}%, {:.1f} ms per training step",
               100 * result["test_accuracy"].get<double>(), result["step_ms"].get<double>());
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config config;
    CLI::App app{"N:M sparse training or magnitude pruning of fmnist-mlp on Fashion-MNIST"};
    strata::programs::configure_cli(app);
    add_flags(app, config);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    STRATA_CHECK((config.mode == "srste" || config.mode == "bdwp") ||
                     (config.mask_every == 1 && config.dense_grad_every == 1),
                 "--mask-every ", config.mask_every, " and --dense-grad-every ",
                 config.dense_grad_every,
                 ": only N:M training (--mode srste or bdwp) uses them, "
                 "not --mode ",
                 config.mode);
    strata::core::check_writable("--metrics-out", config.metrics_out);  // before training
    return run(config);
  });
}
