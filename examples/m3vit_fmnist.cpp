// M3ViT on Fashion-MNIST (docs/moe.md, "M3ViT on Fashion-MNIST"): two tasks, the 10-class
// label (task 0) and the coarse group tops / bottoms / footwear / bags (task 1), learned by
// one of three models of the same compute per token:
//
//   m3vit   fmnist-vit whose FFNs are task-routed experts (8 experts of width 64, top 2;
//           task 0 routes to experts 0..4, task 1 to 3..7), one head per task; each step
//           runs both tasks on the batch and adds their losses;
//   dense   the same trunk with dense FFNs of width 128 (top 2 x 64), shared by the tasks;
//   single  fmnist-vit with FFN width 128 trained on --task alone.
//
//   build/examples/m3vit_fmnist --arch m3vit --epochs 3 --threads 1
//   build/examples/m3vit_fmnist --arch single --task 1 --epochs 3
//
// Prints progress, then one JSON line per task it learned: test accuracy, and what that
// task activates at inference (extract_task's single-task model: parameters, multiply-adds
// and parameter bytes per image), with the multi-task model's total parameters.
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/moe/task_vit.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

namespace {

namespace core = strata::core;
namespace moe = strata::moe;

struct Config {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string arch = "m3vit";
  int64_t task = 0;  // single: the task it learns
  int epochs = 3;
  int64_t max_steps = 0;
  int64_t batch = 128;
  double lr = 1e-3;
  uint64_t seed = 0;
  int threads = 1;
};

at::Tensor targets(int64_t task, const at::Tensor& labels) {
  return task == 0 ? labels : moe::fashion_mnist_group(labels);
}

double accuracy(const std::function<at::Tensor(const at::Tensor&)>& forward,
                const core::FashionMnist& test, int64_t task) {
  torch::NoGradGuard no_grad;
  double correct = 0;
  for (int64_t begin = 0; begin < test.size(); begin += 1000) {
    const int64_t end = std::min(begin + 1000, test.size());
    const at::Tensor logits = forward(test.images.slice(0, begin, end));
    correct +=
        logits.argmax(1).eq(targets(task, test.labels.slice(0, begin, end))).sum().item<double>();
  }
  return correct / static_cast<double>(test.size());
}

int run(const Config& c) {
  core::set_num_threads(c.threads);
  const moe::M3VitOptions options = moe::M3VitOptions().experts(c.arch == "m3vit" ? 8 : 0);
  // Before the data loads: a task the models do not have is one line, not a crash later.
  STRATA_CHECK(c.task >= 0 && c.task < options.tasks(), "--task ", c.task, ": the model has ",
               options.tasks(), " tasks, expected 0 to ", options.tasks() - 1);
  const core::FashionMnist train =
      core::load_fashion_mnist(c.data_dir, core::FashionMnistSplit::Train);
  const core::FashionMnist test =
      core::load_fashion_mnist(c.data_dir, core::FashionMnistSplit::Test);
  core::seed_everything(c.seed);

  // The model and the tasks it learns: the multi-task model both, the single one --task.
  moe::M3Vit multi{nullptr};
  torch::nn::Sequential single{nullptr};
  std::vector<int64_t> tasks;
  torch::nn::Module* model = nullptr;
  if (c.arch == "single") {
    single =
        core::make_fmnist_vit(core::FmnistVitOptions(options.vit())
                                  .ffn(options.dense_ffn())
                                  .classes(options.task_classes()[static_cast<size_t>(c.task)]));
    model = single.get();
    tasks = {c.task};
  } else {
    multi = moe::M3Vit(options);
    model = multi.get();
    tasks = {0, 1};
  }
  const auto forward = [&](int64_t task, const at::Tensor& x) {
    if (!single.is_empty()) return single->forward(x);
    multi->set_task(task);
    return multi->forward(x);
  };

  torch::optim::AdamW adam(model->parameters(), torch::optim::AdamWOptions(c.lr));
  const int64_t steps_per_epoch = train.size() / c.batch;
  const int64_t schedule = steps_per_epoch * c.epochs;
  const int64_t last = c.max_steps > 0 ? std::min(schedule, c.max_steps) : schedule;
  spdlog::info("{}: {} steps of batch {} on {} thread(s), {} parameters", c.arch, last, c.batch,
               c.threads, moe::parameter_count(*model));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  at::Tensor order;
  model->train();
  for (int64_t step = 0; step < last; ++step) {
    if (step % steps_per_epoch == 0) order = at::randperm(train.size(), gen);
    const at::Tensor idx =
        order.slice(0, (step % steps_per_epoch) * c.batch, (step % steps_per_epoch + 1) * c.batch);
    const at::Tensor x = train.images.index_select(0, idx);
    const at::Tensor labels = train.labels.index_select(0, idx);
    // Cosine decay to 0 over the schedule.
    const double lr = 0.5 * c.lr * (1.0 + std::cos(M_PI * static_cast<double>(step) / schedule));
    for (auto& group : adam.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    adam.zero_grad();
    at::Tensor loss = at::zeros({});
    for (const int64_t t : tasks)
      loss = loss + torch::nn::functional::cross_entropy(forward(t, x), targets(t, labels));
    loss.backward();
    adam.step();
    if ((step + 1) % 50 == 0 || step + 1 == last)
      spdlog::info("step {}/{} (epoch {}): loss {:.4f}", step + 1, last, step / steps_per_epoch,
                   loss.item<double>());
  }

  model->eval();
  for (const int64_t t : tasks) {
    const torch::nn::Sequential exported =
        single.is_empty() ? moe::extract_task(*multi, t) : single;
    const moe::InferenceCost cost = moe::inference_cost(exported);
    const nlohmann::json line = {
        {"arch", c.arch},
        {"task", t},
        {"test_accuracy", accuracy([&](const at::Tensor& x) { return forward(t, x); }, test, t)},
        {"steps", last},
        {"batch", c.batch},
        {"model_parameters", moe::parameter_count(*model)},
        {"task_parameters", cost.parameters},
        {"task_macs_per_image", cost.macs},
        {"task_parameter_bytes", cost.parameter_bytes}};
    std::cout << line.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config c;
    CLI::App app{
        "M3ViT on Fashion-MNIST: task-routed experts against a dense multi-task ViT "
        "and single-task ViTs"};
    strata::programs::configure_cli(app);
    using namespace strata::programs;  // NOLINT(google-build-using-namespace): the flag ranges
    app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
    app.add_option("--arch", c.arch, "m3vit, dense or single")
        ->check(CLI::IsMember({"m3vit", "dense", "single"}));
    app.add_option("--task", c.task, "single: the task it learns (0 label, 1 coarse group)");
    integer_range(app.add_option("--epochs", c.epochs, "Epochs (the cosine schedule's length)"), 1,
                  kMaxEpochs);
    integer_range(app.add_option("--max-steps", c.max_steps,
                                 "Stop after this many steps (0: no "
                                 "limit)"),
                  0, kMaxSteps);
    integer_range(app.add_option("--batch", c.batch, "Batch size"), 1, kFashionMnistTrainImages);
    positive_real(app.add_option("--lr", c.lr, "Peak AdamW learning rate"), kMaxLearningRate);
    integer_range(app.add_option("--seed", c.seed, "Seed"), 0, kMaxSeed);
    threads_range(app.add_option("--threads", c.threads, "Threads (LibTorch and BLAS)"));
    if (auto code = parse_cli(app, argc, argv)) return *code;
    return run(c);
  });
}
