// The training essentials of HybridParallel (docs/zero.md): clipping by the global gradient
// norm gives the single-process norm and update with DDP, ZeRO 1/2/3, pp 2 (one process and
// two ranks) and pp 2 x dp 2, on a model with an embedding tied to its output head and on a
// plain MLP; N accumulated micro-steps equal one step of the N-times batch (DDP, ZeRO 1/2,
// pp 2) and synchronize once per optimizer step.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "strata/core/flight_recorder.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/parameters.h"
#include "strata/parallel/comm/recording_communicator.h"
#include "strata/parallel/data/hybrid_parallel.h"

namespace strata::parallel::testing {
namespace {

constexpr double kTolerance = 1e-5;  // relative, float32
constexpr int kSteps = 4;
constexpr int64_t kBatch = 12;  // a micro-step's global batch: divisible by 1, 2, 3 and 4

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// A model, the same at every call, and the global batch of `rows` rows for step `step`.
struct Workload {
  std::string name;
  std::function<torch::nn::Sequential()> model;
  std::function<std::pair<at::Tensor, at::Tensor>(int64_t step, int64_t rows)> batch;
  PipelineLoss loss;
};

// Seeded on the global generator one thread at a time: in-process ranks build their models
// at once.
torch::nn::Sequential seeded(const std::function<torch::nn::Sequential()>& make) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  torch::manual_seed(0);
  return make();
}

// A tiny fortunes-lm: its embedding is tied to the output head (on the first and the last
// stage of a pipeline).
Workload tied_lm() {
  return {"tied-lm",
          [] {
            return seeded([] {
              return core::make_transformer_lm(
                  core::TransformerLMOptions().layers(2).d_model(16).heads(2).ffn(32).context(8));
            });
          },
          [](int64_t step, int64_t rows) {
            const at::Tensor tokens = at::randint(0, 256, {rows, 9}, generator(300 + step));
            return std::make_pair(tokens.slice(1, 0, 8), tokens.slice(1, 1, 9));
          },
          core::lm_loss};
}

// Layers of odd sizes (ZeRO's shards are uneven); no tied weights, so ZeRO 3 takes it.
Workload mlp() {
  return {"mlp",
          [] {
            return seeded([] {
              return torch::nn::Sequential(torch::nn::Linear(12, 23), torch::nn::Tanh(),
                                           torch::nn::Linear(23, 17), torch::nn::ReLU(),
                                           torch::nn::Linear(17, 5));
            });
          },
          [](int64_t step, int64_t rows) {
            auto gen = generator(400 + step);
            return std::make_pair(at::randn({rows, 12}, gen), at::randint(0, 5, {rows}, gen));
          },
          [](const at::Tensor& logits, const at::Tensor& labels) {
            return torch::nn::functional::cross_entropy(logits, labels);
          }};
}

struct Mode {
  std::string name;
  int ranks;  // in-process ranks (1 with pp 2: the pipeline's ranks are threads)
  int pp;
  int zero;
};

struct Result {
  std::vector<double> norms;                     // each step's, before clipping
  std::map<std::string, at::Tensor> parameters;  // by name in the whole model
  at::Tensor output;                             // of the trained model on a fixed batch
};

torch::optim::SGD make_sgd(std::vector<at::Tensor> parameters) {
  return torch::optim::SGD(parameters, torch::optim::SGDOptions(0.1).momentum(0.9));
}

// One process, the whole batch of every step: the norm torch::nn::utils::clip_grad_norm_
// measures over the unique parameters (a tied weight once), the clipped step.
Result single_process(const Workload& w, double clip, int accumulate) {
  torch::nn::Sequential model = w.model();
  const std::vector<at::Tensor> parameters = core::unique_parameters(*model);
  torch::optim::SGD sgd = make_sgd(parameters);
  Result result;
  for (int step = 0; step < kSteps; ++step) {
    sgd.zero_grad();
    const auto [inputs, targets] = w.batch(step, kBatch * accumulate);
    w.loss(model->forward(inputs), targets).backward();
    result.norms.push_back(torch::nn::utils::clip_grad_norm_(parameters, clip > 0 ? clip : 1e30));
    sgd.step();
  }
  for (const auto& p : model->named_parameters()) result.parameters[p.key()] = p.value().clone();
  torch::NoGradGuard no_grad;
  result.output = model->forward(w.batch(99, kBatch).first);
  return result;
}

HybridParallelOptions options_of(const Mode& m, double clip, int accumulate) {
  return HybridParallelOptions()
      .pipeline_parallel(m.pp)
      .zero_stage(m.zero)
      .clip_grad_norm(clip)
      .accumulate(accumulate)
      .pipeline(PipelineParallelOptions().micro_batches(2));
}

// The same steps in `m`: each replica trains on its share of the global batch.
Result parallel_run(const Workload& w, const Mode& m, double clip, int accumulate) {
  Result result;
  std::mutex mutex;
  run_in_process(m.ranks, [&](Communicator& comm) {
    torch::nn::Sequential model = w.model();
    const int replicas = m.ranks / (m.ranks == 1 ? 1 : m.pp);
    HybridParallel parallel(model, comm.shared_from_this(), w.loss,
                            w.batch(0, kBatch).first.chunk(replicas)[0],
                            options_of(m, clip, accumulate));
    torch::optim::SGD sgd = make_sgd(parallel.parameters());
    std::vector<double> norms;
    for (int step = 0; step < kSteps; ++step) {
      const auto [inputs, targets] = w.batch(step, kBatch * accumulate);
      const int r = parallel.data_parallel_rank();
      parallel.train_step(inputs.chunk(replicas)[r], targets.chunk(replicas)[r], sgd);
      norms.push_back(parallel.last_grad_norm());
    }
    const at::Tensor output = parallel.evaluate(w.batch(99, kBatch).first);
    std::lock_guard<std::mutex> lock(mutex);
    // Stage 3 holds only shards between steps: its output speaks for its parameters.
    if (m.zero < 3) {
      const torch::nn::Module& local = parallel.pipeline()
                                           ? parallel.pipeline()->local_module()
                                           : static_cast<const torch::nn::Module&>(*model);
      for (const auto& p : local.named_parameters())
        result.parameters.emplace(p.key(), p.value().detach().clone());
    }
    if (comm.rank() == 0) {
      result.norms = norms;
      result.output = output;
    } else if (clip > 0) {
      // Every rank measured the same norm.
      for (size_t i = 0; i < norms.size(); ++i)
        EXPECT_DOUBLE_EQ(norms[i], result.norms.empty() ? norms[i] : result.norms[i]);
    }
  });
  return result;
}

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-12);
}

void expect_same(const Result& expected, const Result& got, const Mode& m, bool clipping) {
  if (clipping) {
    ASSERT_EQ(got.norms.size(), expected.norms.size());
    for (size_t i = 0; i < got.norms.size(); ++i)
      EXPECT_NEAR(got.norms[i], expected.norms[i], kTolerance * expected.norms[i])
          << "step " << i << "'s gradient norm";
  }
  if (m.zero < 3) {
    EXPECT_EQ(got.parameters.size(), expected.parameters.size());
    for (const auto& [name, value] : expected.parameters) {
      ASSERT_TRUE(got.parameters.count(name)) << name << " missing";
      EXPECT_LT(relative_error(got.parameters.at(name), value), kTolerance) << name;
    }
  }
  EXPECT_LT(relative_error(got.output, expected.output), kTolerance)
      << "the trained model's output";
}

std::vector<Mode> modes(const Workload& w) {
  std::vector<Mode> all = {
      {"ddp 2", 2, 1, 0},      {"zero 1 x 2", 2, 1, 1},          {"zero 2 x 2", 2, 1, 2},
      {"zero 1 x 3", 3, 1, 1}, {"pp 2 in one process", 1, 2, 0}, {"pp 2", 2, 2, 0},
      {"pp 2 x dp 2", 4, 2, 0}};
  // Stage 3 refuses a weight shared by two layers.
  if (w.name == "mlp") all.push_back({"zero 3 x 2", 2, 1, 3});
  return all;
}

TEST(TrainingEssentials, GlobalNormClippingMatchesSingleProcess) {
  for (const Workload& w : {tied_lm(), mlp()}) {
    const Result probe = single_process(w, 0, 1);
    // A max norm below every step's norm, so that every step clips.
    const double clip = 0.5 * *std::min_element(probe.norms.begin(), probe.norms.end());
    const Result expected = single_process(w, clip, 1);
    for (const Mode& m : modes(w)) {
      if (w.name == "mlp" && m.pp > 1) continue;  // the tied model covers pipelines
      SCOPED_TRACE(w.name + ", " + m.name);
      expect_same(expected, parallel_run(w, m, clip, 1), m, true);
    }
  }
}

TEST(TrainingEssentials, AccumulatedMicroStepsEqualOneLargeStep) {
  const Workload w = tied_lm();
  const Result expected = single_process(w, 0, 3);
  for (const Mode& m : std::vector<Mode>{{"ddp 2", 2, 1, 0},
                                         {"zero 1 x 2", 2, 1, 1},
                                         {"zero 2 x 2", 2, 1, 2},
                                         {"pp 2 x dp 2", 4, 2, 0}}) {
    SCOPED_TRACE(m.name + ", 3 micro-steps");
    expect_same(expected, parallel_run(w, m, 0, 3), m, false);
  }
  // With clipping too: the norm is that of the whole batch's gradient.
  const Result probe = single_process(w, 0, 3);
  const double clip = 0.5 * *std::min_element(probe.norms.begin(), probe.norms.end());
  const Mode zero{"zero 2 x 2", 2, 1, 2};
  SCOPED_TRACE("zero 2 x 2, 3 micro-steps, clipped");
  expect_same(single_process(w, clip, 3), parallel_run(w, zero, clip, 3), zero, true);
}

// One synchronization per optimizer step: a step of 3 micro-steps makes as many gradient
// all-reduces (DDP) or reduce-scatters (ZeRO) as a step of one, here 1 (one bucket).
TEST(TrainingEssentials, AccumulationSynchronizesOncePerStep) {
  const Workload w = mlp();
  for (const int zero : {0, 1, 2}) {
    for (const int accumulate : {1, 3}) {
      SCOPED_TRACE("zero " + std::to_string(zero) + ", " + std::to_string(accumulate) +
                   " micro-steps");
      run_in_process(2, [&](Communicator& comm) {
        core::FlightRecorder recorder(4096);
        HybridParallel parallel(w.model(), record_operations(comm.shared_from_this(), recorder),
                                w.loss, w.batch(0, kBatch).first.chunk(2)[0],
                                options_of({"", 2, 1, zero}, 0, accumulate));
        torch::optim::SGD sgd = make_sgd(parallel.parameters());
        const auto [inputs, targets] = w.batch(0, kBatch * accumulate);
        const uint64_t before = recorder.begin("step");
        parallel.train_step(inputs.chunk(2)[comm.rank()], targets.chunk(2)[comm.rank()], sgd);
        int synchronizations = 0;
        for (const core::FlightRecord& r : recorder.finished()) {
          const bool reduction = r.description.rfind("allreduce", 0) == 0 ||
                                 r.description.rfind("reduce_scatter", 0) == 0;
          synchronizations += r.sequence > before && reduction;
        }
        EXPECT_EQ(synchronizations, 1) << "rank " << comm.rank();
      });
    }
  }
}

}  // namespace
}  // namespace strata::parallel::testing
