// QFX on fmnist-cnn: train the float model, then quantize it at each width with
// post-training quantization (PTQ) and with QFX fine-tuning (trained weights and binary
// points), and in multiplier-free K-hot form; print the test accuracy of each.
//
//   build/examples/qfx_fmnist                         # the full run: 4, 6, 8 bits, K=2 at 8
//   build/examples/qfx_fmnist --bits 6 --out qfx.jsonl --export-dir qfx-models
//   build/examples/qfx_fmnist --quick                 # a small smoke run (tests use it)
//
// Every tensor of a quantized layer (input, weight, output) has W bits; each binary
// point starts where PTQ puts it (the 99.9th percentile of |x| over calibration batches,
// weights by the same rule), so QFX starts from exactly the PTQ model and fine-tunes it.
#include <torch/torch.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/logging.h"
#include "strata/core/metrics.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/output_files.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/output_flags.h"
#include "strata/quant/qfx.h"

namespace {

namespace nn = torch::nn;
namespace q = strata::quant;
using strata::core::classification_accuracy;
using strata::core::FashionMnist;

struct Config {
  std::string data_dir = strata::core::kFashionMnistDir;
  int epochs = 2;           // float training
  int64_t qfx_steps = 120;  // fine-tuning steps per quantized model
  std::vector<int> bits = {4, 6, 8};
  int k_hot = 2;  // 0: skip the K-hot models
  int k_hot_bits = 8;
  int64_t batch = 256;
  double lr = 0.05;
  double momentum = 0.9;
  double qfx_lr = 0.01;  // weights while fine-tuning
  double binary_point_lr = 0.05;
  int calibration_batches = 4;
  double percentile = 99.9;
  uint64_t seed = 0;
  int threads = strata::core::default_threads_per_rank();
  bool quick = false;
  bool overwrite = false;
  std::string out;
  std::string export_dir;
};

void add_flags(CLI::App& app, Config& c) {
  using namespace strata::programs;  // NOLINT(google-build-using-namespace): the flag ranges
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
  integer_range(app.add_option("--epochs", c.epochs, "Epochs of float training"), 1, kMaxEpochs);
  integer_range(app.add_option("--qfx-steps", c.qfx_steps, "Steps of QFX fine-tuning per model"), 1,
                kMaxSteps);
  integer_range(
      app.add_option("--bits", c.bits, "Widths W to quantize to (comma-separated)")->delimiter(','),
      1, 24);
  integer_range(app.add_option("--k-hot", c.k_hot, "K of the multiplier-free models (0: none)"), 0,
                24);
  integer_range(app.add_option("--k-hot-bits", c.k_hot_bits, "Width of the K-hot models"), 1, 24);
  integer_range(app.add_option("--batch", c.batch, "Batch size"), 1, kFashionMnistTrainImages);
  positive_real(app.add_option("--lr", c.lr, "Peak learning rate of float training (SGD, cosine)"),
                kMaxLearningRate);
  real_range(app.add_option("--momentum", c.momentum, "SGD momentum"), 0, 1);
  positive_real(
      app.add_option("--qfx-lr", c.qfx_lr, "Peak learning rate of the weights in QFX fine-tuning"),
      kMaxLearningRate);
  positive_real(app.add_option("--binary-point-lr", c.binary_point_lr,
                               "Peak learning rate of the binary points in QFX fine-tuning (Adam)"),
                kMaxLearningRate);
  integer_range(app.add_option("--calibration-batches", c.calibration_batches,
                               "Training batches PTQ calibrates on"),
                1, kMaxSteps);
  real_range(app.add_option("--percentile", c.percentile, "PTQ percentile of |activation|"), 0,
             100);
  integer_range(app.add_option("--seed", c.seed, "Seed for initialization and shuffling"), 0,
                kMaxSeed);
  threads_range(app.add_option("--threads", c.threads, "Threads (LibTorch and BLAS)"));
  app.add_flag(
      "--quick", c.quick,
      "Smoke run: 1024 training and 500 test images, 1 epoch, at most 10 fine-tuning steps");
  app.add_option("--out", c.out, "Write one JSON object per result to this file");
  app.add_option("--export-dir", c.export_dir,
                 "Write every QFX model as JSON (export_qfx) into this existing directory");
  strata::programs::add_overwrite_flag(app, c.overwrite);
}

double cosine(double peak, int64_t step, int64_t steps) {
  return 0.5 * peak *
         (1.0 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(steps)));
}

// Shuffled batches, every optimizer stepping on the same loss with a cosine schedule
// from its own peak rate.
void train(nn::Sequential& model, const std::vector<torch::optim::Optimizer*>& optimizers,
           const FashionMnist& data, int64_t steps, int64_t batch, const std::string& what) {
  std::vector<double> peaks;
  for (auto* optimizer : optimizers)
    peaks.push_back(optimizer->param_groups()[0].options().get_lr());
  model->train();
  const int64_t per_epoch = data.size() / batch;
  at::Tensor order;
  double loss_sum = 0;
  for (int64_t step = 0; step < steps; ++step) {
    if (step % per_epoch == 0) order = torch::randperm(data.size(), torch::kLong);
    const at::Tensor idx =
        order.slice(0, (step % per_epoch) * batch, (step % per_epoch + 1) * batch);
    for (size_t i = 0; i < optimizers.size(); ++i) {
      optimizers[i]->param_groups()[0].options().set_lr(cosine(peaks[i], step, steps));
      optimizers[i]->zero_grad();
    }
    const at::Tensor loss = nn::functional::cross_entropy(
        model->forward(data.images.index_select(0, idx)), data.labels.index_select(0, idx));
    loss.backward();
    for (auto* optimizer : optimizers) optimizer->step();
    loss_sum += loss.item<double>();
    if ((step + 1) % 100 == 0 || step + 1 == steps) {
      spdlog::info("{}: step {}/{} loss {:.4f}", what, step + 1, steps,
                   loss_sum / ((step % 100) + 1));
      loss_sum = 0;
    }
  }
}

struct Result {
  std::string method;
  int bits = 0;  // 0: float
  int k_hot = 0;
  double accuracy = 0;
  int64_t multipliers = 0, shift_adds = 0;
};

class Experiment {
 public:
  Experiment(const Config& c, FashionMnist train, FashionMnist test)
      : c_(c), train_(std::move(train)), test_(std::move(test)), metrics_(c.out) {
    for (int i = 0; i < c.calibration_batches; ++i) {
      const int64_t begin = (i * c.batch) % std::max<int64_t>(1, train_.size() - c.batch);
      calibration_.push_back(train_.images.slice(0, begin, begin + c.batch));
    }
  }

  void run() {
    strata::core::seed_everything(c_.seed);
    nn::Sequential float_model = strata::core::make_fmnist_cnn();
    torch::optim::SGD sgd(float_model->parameters(),
                          torch::optim::SGDOptions(c_.lr).momentum(c_.momentum));
    train(float_model, {&sgd}, train_, c_.epochs * steps_per_epoch(), c_.batch, "float");
    record({"float", 0, 0, classification_accuracy(float_model, test_)});

    for (int w : c_.bits) quantize(float_model, q::QfxOptions(w));
    if (c_.k_hot > 0) quantize(float_model, q::QfxOptions(c_.k_hot_bits).k_hot(c_.k_hot));
    print_table();
  }

 private:
  int64_t steps_per_epoch() const { return train_.size() / c_.batch; }

  // PTQ with the max and the percentile rule, then QFX fine-tuning of the percentile model
  // (its binary points are QFX's starting point).
  void quantize(const nn::Sequential& float_model, const q::QfxOptions& options) {
    const int w = options.width(), k = options.k_hot().value_or(0);
    const std::string suffix = k > 0 ? "-khot" : "";
    nn::Sequential ptq_max = q::quantize_model(float_model, options);
    q::calibrate_ptq(ptq_max, calibration_);
    record(with_multipliers({"ptq-max" + suffix, w, k, classification_accuracy(ptq_max, test_)},
                            ptq_max));

    nn::Sequential model = q::quantize_model(float_model, options);
    q::calibrate_ptq(
        model, calibration_,
        q::PtqOptions().statistic(q::RangeStatistic::Percentile).percentile(c_.percentile));
    record(with_multipliers(
        {"ptq-percentile" + suffix, w, k, classification_accuracy(model, test_)}, model));

    // Weights by SGD as in float training; binary points by Adam, whose steps do not
    // depend on the gradient's scale (a log2 step size moves ~ lr per step when its
    // gradient keeps its sign; only a move past .5 changes the type).
    torch::optim::SGD sgd(q::weight_parameters(*model),
                          torch::optim::SGDOptions(c_.qfx_lr).momentum(c_.momentum));
    torch::optim::Adam adam(q::binary_point_parameters(*model),
                            torch::optim::AdamOptions(c_.binary_point_lr));
    const std::vector<int> start = integer_bits(model);
    train(model, {&sgd, &adam}, train_, c_.qfx_steps, c_.batch,
          "qfx W=" + std::to_string(w) + suffix);
    const std::vector<int> end = integer_bits(model);
    int moved = 0;
    for (size_t i = 0; i < start.size(); ++i) moved += start[i] != end[i];
    spdlog::info("qfx W={}{}: {} of {} binary points moved in training", w, suffix, moved,
                 start.size());
    record(with_multipliers({"qfx" + suffix, w, k, classification_accuracy(model, test_)}, model));
    if (!c_.export_dir.empty()) {
      q::export_qfx(model, (std::filesystem::path(c_.export_dir) /
                            ("qfx-w" + std::to_string(w) + suffix + ".json"))
                               .string());
    }
  }

  static std::vector<int> integer_bits(const nn::Sequential& model) {
    std::vector<int> out;
    for (const auto& quantizer : q::quantizers_of(*model))
      out.push_back(quantizer->type().integer_bits);
    return out;
  }

  static Result with_multipliers(Result r, const nn::Sequential& model) {
    const q::MultiplierReport report = q::multiplier_report(*model);
    r.multipliers = report.multipliers;
    r.shift_adds = report.shift_adds;
    return r;
  }

  void record(const Result& r) {
    spdlog::info("{} W={} K={}: test accuracy {:.2f}%", r.method, r.bits, r.k_hot,
                 100 * r.accuracy);
    results_.push_back(r);
    metrics_.write({{"example", "qfx_fmnist"},
                    {"method", r.method},
                    {"bits", r.bits},
                    {"k_hot", r.k_hot},
                    {"test_accuracy", r.accuracy},
                    {"multipliers", r.multipliers},
                    {"shift_adds", r.shift_adds},
                    {"quick", c_.quick}});
  }

  void print_table() {
    std::printf("\n%-20s %5s %3s %10s %12s %11s\n", "method", "bits", "K", "accuracy",
                "multipliers", "shift-adds");
    for (const Result& r : results_) {
      std::printf("%-20s %5s %3d %9.2f%% %12lld %11lld\n", r.method.c_str(),
                  r.bits ? std::to_string(r.bits).c_str() : "float", r.k_hot, 100 * r.accuracy,
                  static_cast<long long>(r.multipliers), static_cast<long long>(r.shift_adds));
    }
    std::fflush(stdout);
    metrics_.write_final({{"example", "qfx_fmnist"}, {"results", results_.size()}});
  }

  const Config& c_;
  FashionMnist train_, test_;
  std::vector<at::Tensor> calibration_;
  std::vector<Result> results_;
  strata::core::MetricsWriter metrics_;
};

FashionMnist head(const FashionMnist& data, int64_t n) {
  return {data.images.slice(0, 0, n), data.labels.slice(0, 0, n)};
}

int run(Config c) {
  strata::core::init_logging(0);
  strata::core::set_num_threads(c.threads);
  // Every width must be valid before minutes of float training.
  for (int w : c.bits) q::QfxOptions(w).check();
  if (c.k_hot > 0) q::QfxOptions(c.k_hot_bits).k_hot(c.k_hot).check();
  STRATA_CHECK(c.export_dir.empty() || std::filesystem::is_directory(c.export_dir), "--export-dir ",
               c.export_dir, ": no such directory");
  strata::core::check_writable("--out", c.out);
  strata::core::check_writable("--export-dir", c.export_dir, strata::core::OutputKind::Directory);
  strata::core::check_output("--out", c.out, {c.data_dir}, c.overwrite);
  FashionMnist train_set =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Train);
  FashionMnist test_set =
      strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Test);
  if (c.quick) {
    train_set = head(train_set, 1024);
    test_set = head(test_set, 500);
    c.epochs = 1;
    c.batch = std::min<int64_t>(c.batch, 128);
    c.qfx_steps = std::min<int64_t>(c.qfx_steps, 10);
    c.calibration_batches = std::min(c.calibration_batches, 2);
  }
  STRATA_CHECK(train_set.size() >= c.batch, "--batch ", c.batch,
               " is larger than the training set");
  strata::core::Stopwatch clock;
  Experiment(c, std::move(train_set), std::move(test_set)).run();
  spdlog::info("done in {:.0f} s", clock.seconds());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config config;
    CLI::App app{
        "QFX on fmnist-cnn: float training, then post-training quantization and QFX "
        "fine-tuning at each width, and multiplier-free K-hot weights."};
    strata::programs::configure_cli(app);
    add_flags(app, config);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    return run(config);
  });
}
