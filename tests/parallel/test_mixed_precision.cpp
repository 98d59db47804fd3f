// Mixed precision (core/precision.h, docs/precision.md): bf16 training follows fp32 on
// fmnist-mlp and fortunes-lm in one process, data parallel and pipelined; the master
// weights, their gradients and the optimizer state stay fp32; a bf16 gradient all-reduce
// equals the fp32 one within bf16's precision; a bf16 run resumes bit-exactly; pipeline
// activations travel in bf16.
#include <torch/torch.h>

#include <gmock/gmock.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>

#include "comm_test_support.h"
#include "core/test_util.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/parameters.h"
#include "strata/core/precision.h"
#include "strata/parallel/data/hybrid_parallel.h"

namespace strata::parallel::testing {
namespace {

using core::Precision;

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// `make` seeded with 0 on the global generator, one thread at a time: the ranks of an
// in-process job build their models at the same time, and interleaved draws would give
// each rank (and the reference) other weights.
torch::nn::Sequential seeded(const std::function<torch::nn::Sequential()>& make) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  torch::manual_seed(0);
  return make();
}

// A workload: the model (the same at every call), and the global batch of each step.
struct Workload {
  std::string name;
  std::function<torch::nn::Sequential()> model;
  std::function<std::pair<at::Tensor, at::Tensor>(int64_t step)> batch;
  PipelineLoss loss;
  double lr;
  // bf16 follows fp32 (expect_follows): every step's loss within `step_tolerance`
  // (relative) of fp32's, the mean of the last 20 within `end_tolerance`.
  double step_tolerance, end_tolerance;
};

// fmnist-mlp on synthetic 28x28 images, one fixed random prototype per class plus noise
// twice its size (the real data set would cost seconds to load), batch 16.
Workload fmnist_mlp() {
  const at::Tensor prototypes = at::randn({10, 784}, generator(7));
  return {"fmnist-mlp", [] { return seeded(core::make_fmnist_mlp); },
          [prototypes](int64_t step) {
            auto gen = generator(100 + step);
            const at::Tensor labels = at::randint(0, 10, {16}, gen);
            const at::Tensor images =
                prototypes.index_select(0, labels) + 2 * at::randn({16, 784}, gen);
            return std::make_pair(images.reshape({16, 1, 28, 28}), labels);
          },
          [](const at::Tensor& logits, const at::Tensor& labels) {
            return torch::nn::functional::cross_entropy(logits, labels);
          },
          0.02,
          // The loss sits near ln 10 and then drops; bf16's rounding moves the drop by a
          // step or two, so single steps differ by up to 9% (measured), the end by 0.3%.
          0.15, 0.02};
}

// A small fortunes-lm (2 layers, d_model 128, 2 heads of 64, context 32) on byte
// sequences that follow a rule (each byte is the previous plus a per-sequence stride),
// batch 8.
Workload fortunes_lm() {
  const auto options =
      core::TransformerLMOptions().layers(2).d_model(128).heads(2).ffn(256).context(32);
  return {"fortunes-lm",
          [options] { return seeded([&] { return core::make_transformer_lm(options); }); },
          [](int64_t step) {
            auto gen = generator(200 + step);
            const at::Tensor start = at::randint(0, 256, {8, 1}, gen);
            const at::Tensor stride = at::randint(1, 4, {8, 1}, gen);
            const at::Tensor tokens = (start + stride * at::arange(33)).remainder(256);
            return std::make_pair(tokens.slice(1, 0, 32), tokens.slice(1, 1, 33));
          },
          core::lm_loss, 0.05,
          // Measured: at most 0.2% at any step, 0.03% over the last 20.
          0.02, 0.005};
}

struct TrainedRun {
  std::vector<double> losses;          // the global batch's, per step
  std::vector<at::Tensor> parameters;  // rank 0's, after the last step
};

// `steps` SGD steps of `w` on `ranks` in-process ranks with `pp` stages.
TrainedRun train(const Workload& w, int ranks, int pp, Precision precision, int steps,
                 c10::optional<at::ScalarType> reduce_dtype = c10::nullopt) {
  TrainedRun run;
  run.losses.resize(static_cast<size_t>(steps));
  run_in_process(ranks, [&](Communicator& comm) {
    const int replicas = ranks / pp;
    HybridParallel model(
        w.model(), comm.shared_from_this(), w.loss, w.batch(0).first.chunk(replicas)[0],
        HybridParallelOptions().pipeline_parallel(pp).pipeline(
            PipelineParallelOptions().micro_batches(2).precision(precision).grad_reduce_dtype(
                reduce_dtype)));
    torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(w.lr).momentum(0.9));
    for (int step = 0; step < steps; ++step) {
      const auto [inputs, targets] = w.batch(step);
      const int r = model.data_parallel_rank();
      const double loss = model.mean_over_replicas(
          model.train_step(inputs.chunk(replicas)[r], targets.chunk(replicas)[r], sgd));
      if (comm.rank() == 0) run.losses[static_cast<size_t>(step)] = loss;
    }
    if (comm.rank() == 0) {
      for (const at::Tensor& p : model.parameters()) run.parameters.push_back(p.detach().clone());
      // Master weights, their gradients and the optimizer state stay fp32.
      for (const at::Tensor& p : model.parameters()) {
        EXPECT_EQ(p.scalar_type(), at::kFloat);
        EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
      }
      for (const auto& [key, state] : sgd.state()) {
        const auto& momentum = static_cast<torch::optim::SGDParamState&>(*state);
        EXPECT_EQ(momentum.momentum_buffer().scalar_type(), at::kFloat);
      }
    }
  });
  return run;
}

constexpr int kSteps = 100;

double mean_of_last(const std::vector<double>& losses, size_t n) {
  double sum = 0;
  for (size_t i = losses.size() - n; i < losses.size(); ++i) sum += losses[i];
  return sum / static_cast<double>(n);
}

// bf16 follows fp32 within the workload's tolerances, and the run learns (its last losses
// are well below its first), so that a run that does not train cannot pass by staying close.
void expect_follows(const Workload& w, const TrainedRun& bf16, const TrainedRun& fp32) {
  ASSERT_EQ(bf16.losses.size(), fp32.losses.size());
  double worst = 0;
  for (size_t i = 0; i < fp32.losses.size(); ++i) {
    EXPECT_NEAR(bf16.losses[i], fp32.losses[i], w.step_tolerance * fp32.losses[i]) << "step " << i;
    worst = std::max(worst, std::abs(bf16.losses[i] / fp32.losses[i] - 1));
  }
  const double fp32_end = mean_of_last(fp32.losses, 20), bf16_end = mean_of_last(bf16.losses, 20);
  EXPECT_NEAR(bf16_end, fp32_end, w.end_tolerance * fp32_end);
  // What the tolerances leave, in the test's XML output and on the console.
  ::testing::Test::RecordProperty("worst_step_deviation", std::to_string(worst));
  ::testing::Test::RecordProperty("end_deviation", std::to_string(bf16_end / fp32_end - 1));
  std::printf("bf16 vs fp32: worst step %.4f, last 20 steps %.4f (relative); loss %.4f -> %.4f\n",
              worst, bf16_end / fp32_end - 1, bf16.losses.front(), bf16_end);
  EXPECT_LT(bf16_end, 0.7 * bf16.losses.front());
}

class MixedPrecisionTraining : public ::testing::TestWithParam<std::string> {
 protected:
  Workload workload() const { return GetParam() == "mlp" ? fmnist_mlp() : fortunes_lm(); }
  // The fp32 run in one process, trained once per workload for all three tests.
  const TrainedRun& fp32_reference() const {
    static std::map<std::string, TrainedRun> runs;
    auto it = runs.find(GetParam());
    if (it == runs.end())
      it = runs.emplace(GetParam(), train(workload(), 1, 1, Precision::Fp32, kSteps)).first;
    return it->second;
  }
};

TEST_P(MixedPrecisionTraining, Bf16FollowsFp32InOneProcess) {
  expect_follows(workload(), train(workload(), 1, 1, Precision::Bf16, kSteps), fp32_reference());
}

// Two replicas, gradients reduced in bf16, against one fp32 process on the whole batch.
TEST_P(MixedPrecisionTraining, Bf16DataParallelFollowsFp32) {
  expect_follows(workload(), train(workload(), 2, 1, Precision::Bf16, kSteps, at::kBFloat16),
                 fp32_reference());
}

// Two stages, two micro-batches, activations and their gradients sent in bf16.
TEST_P(MixedPrecisionTraining, Bf16PipelineFollowsFp32) {
  expect_follows(workload(), train(workload(), 2, 2, Precision::Bf16, kSteps), fp32_reference());
}

INSTANTIATE_TEST_SUITE_P(Workloads, MixedPrecisionTraining, ::testing::Values("mlp", "lm"),
                         [](const auto& info) { return info.param; });

// bf16 steps are not fp32 steps: the casts happen (a bf16 run that silently computed in
// fp32 would pass the tests above).
TEST(MixedPrecision, Bf16ComputesInBf16) {
  const Workload w = fortunes_lm();
  const TrainedRun fp32 = train(w, 1, 1, Precision::Fp32, 2);
  const TrainedRun bf16 = train(w, 1, 1, Precision::Bf16, 2);
  EXPECT_NE(bf16.losses[0], fp32.losses[0]);
  EXPECT_NEAR(bf16.losses[0], fp32.losses[0], 0.01 * fp32.losses[0]);
}

// The all-reduce in bf16 equals the fp32 all-reduce within bf16's precision (8 bits of
// mantissa: a relative error of 2^-8 per rounding, a few roundings on 4 ranks), writes
// back into the fp32 tensor, and is not the fp32 result (it did round).
TEST(MixedPrecision, Bf16AllReduceEqualsFp32WithinBf16Precision) {
  for (const ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
    run_in_process(4, [op](Communicator& comm) {
      at::Tensor fp32 = at::randn({1000}, generator(comm.rank())) + 2;
      at::Tensor bf16 = fp32.clone();
      comm.allreduce(fp32, op)->wait();
      allreduce_in_dtype(comm, bf16, op, at::kBFloat16)->wait();
      EXPECT_EQ(bf16.scalar_type(), at::kFloat);
      const at::Tensor error = (bf16 - fp32).abs() / fp32.abs().clamp_min(1e-3);
      EXPECT_LT(error.max().item<double>(), 4 * std::pow(2.0, -8));
      EXPECT_FALSE(at::equal(bf16, fp32));
    });
  }
}

// DistributedDataParallel with reduce_dtype bf16: the averaged gradients equal the fp32
// reduction's within bf16's precision and stay in their fp32 buckets.
TEST(MixedPrecision, DataParallelBf16GradientsEqualFp32Reduction) {
  run_in_process(2, [](Communicator& comm) {
    const at::Tensor inputs = at::randn({8, 16}, generator(10 + comm.rank()));
    std::vector<std::vector<at::Tensor>> grads;
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      torch::nn::Sequential model = seeded([] {
        return torch::nn::Sequential(torch::nn::Linear(16, 32), torch::nn::Tanh(),
                                     torch::nn::Linear(32, 4));
      });
      DistributedDataParallel ddp(model.ptr(), comm.shared_from_this(),
                                  DistributedDataParallelOptions().reduce_dtype(dtype));
      model->forward(inputs).square().sum().backward();
      grads.emplace_back();
      for (const at::Tensor& p : model->parameters()) grads.back().push_back(p.grad().clone());
      for (const at::Tensor& b : ddp.bucket_buffers()) EXPECT_EQ(b.scalar_type(), at::kFloat);
    }
    for (size_t i = 0; i < grads[0].size(); ++i) {
      const double scale = grads[0][i].abs().max().item<double>();
      EXPECT_LT((grads[1][i] - grads[0][i]).abs().max().item<double>(),
                4 * std::pow(2.0, -8) * scale)
          << "parameter " << i;
    }
  });
}

// Checkpoints hold the fp32 master weights, and a bf16 run resumed from one continues
// bit-exactly: the same losses and weights as the run that never stopped (a stale cast
// of the weights, or bf16 weights in the checkpoint, would differ).
TEST(MixedPrecision, Bf16RunResumesBitExactly) {
  strata::test::TempDir dir;
  const std::string path = dir.path() + "/step-3";
  const Workload w = fortunes_lm();
  const auto options =
      HybridParallelOptions().pipeline(PipelineParallelOptions().precision(Precision::Bf16));
  const auto steps = [&](HybridParallel& model, torch::optim::Optimizer& adam, int from, int to) {
    std::vector<double> losses;
    for (int step = from; step < to; ++step) {
      const auto [inputs, targets] = w.batch(step);
      losses.push_back(model.train_step(inputs, targets, adam));
    }
    return losses;
  };
  std::vector<double> expected;
  std::vector<at::Tensor> expected_parameters;
  run_in_process(1, [&](Communicator& comm) {
    HybridParallel model(w.model(), comm.shared_from_this(), w.loss, w.batch(0).first, options);
    torch::optim::Adam adam(model.parameters(), torch::optim::AdamOptions(1e-3));
    steps(model, adam, 0, 3);
    model.save_checkpoint(path, adam, 3);
    expected = steps(model, adam, 3, 6);
    for (const at::Tensor& p : model.parameters())
      expected_parameters.push_back(p.detach().clone());
  });
  const core::CheckpointReader reader(path);
  for (const auto& entry : reader.entries()) {
    if (at::isFloatingType(entry.dtype)) EXPECT_EQ(entry.dtype, at::kFloat) << entry.name;
  }
  run_in_process(1, [&](Communicator& comm) {
    auto lm = w.model();
    for (auto& p : lm->parameters()) p.data().mul_(-2);  // everything must come from the file
    HybridParallel model(lm, comm.shared_from_this(), w.loss, w.batch(0).first, options);
    torch::optim::Adam adam(model.parameters(), torch::optim::AdamOptions(1e-3));
    EXPECT_EQ(model.load_checkpoint(path, adam), 3);
    EXPECT_EQ(steps(model, adam, 3, 6), expected);
    const std::vector<at::Tensor> parameters = model.parameters();
    ASSERT_EQ(parameters.size(), expected_parameters.size());
    for (size_t i = 0; i < parameters.size(); ++i)
      EXPECT_TRUE(at::equal(parameters[i], expected_parameters[i])) << "parameter " << i;
  });
}

// Counts the bytes this rank sends point to point, in its groups too.
class SendCounter final : public Communicator {
 public:
  SendCounter(CommunicatorPtr inner, std::shared_ptr<int64_t> bytes)
      : inner_(std::move(inner)), bytes_(std::move(bytes)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }
  WorkPtr isend(const at::Tensor& tensor, int dst, int tag) override {
    *bytes_ += static_cast<int64_t>(tensor.nbytes());
    return inner_->isend(tensor, dst, tag);
  }
  WorkPtr irecv(at::Tensor& tensor, int src, int tag) override {
    return inner_->irecv(tensor, src, tag);
  }
  WorkPtr allreduce(at::Tensor& tensor, ReduceOp op) override {
    return inner_->allreduce(tensor, op);
  }
  WorkPtr broadcast(at::Tensor& tensor, int root) override {
    return inner_->broadcast(tensor, root);
  }
  WorkPtr allgather(const at::Tensor& input, at::Tensor& output) override {
    return inner_->allgather(input, output);
  }
  WorkPtr reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override {
    return inner_->reduce_scatter(input, output, op);
  }
  WorkPtr alltoall(const at::Tensor& input, at::Tensor& output,
                   const std::vector<int64_t>& send_splits,
                   const std::vector<int64_t>& recv_splits) override {
    return inner_->alltoall(input, output, send_splits, recv_splits);
  }
  WorkPtr barrier() override { return inner_->barrier(); }
  std::shared_ptr<Communicator> split(int color, int key) override {
    return std::make_shared<SendCounter>(inner_->split(color, key), bytes_);
  }

 private:
  CommunicatorPtr inner_;
  std::shared_ptr<int64_t> bytes_;
};

// Between stages the activations and their gradients travel in bf16: half the bytes of
// the fp32 run's messages (fortunes-lm: its stages end on the fp32 residual stream, which autocast
// leaves fp32).
TEST(MixedPrecision, PipelineSendsActivationsInBf16) {
  const Workload w = fortunes_lm();
  std::map<Precision, int64_t> bytes;
  for (const Precision precision : {Precision::Fp32, Precision::Bf16}) {
    run_in_process(2, [&](Communicator& comm) {
      auto sent = std::make_shared<int64_t>(0);
      auto counting = std::make_shared<SendCounter>(comm.shared_from_this(), sent);
      HybridParallel model(w.model(), counting, w.loss, w.batch(0).first,
                           HybridParallelOptions().pipeline_parallel(2).pipeline(
                               PipelineParallelOptions().micro_batches(2).precision(precision)));
      torch::optim::SGD sgd(model.parameters(), 0.01);
      *sent = 0;
      const auto [inputs, targets] = w.batch(0);
      model.train_step(inputs, targets, sgd);
      if (comm.rank() == 0) bytes[precision] = *sent;
    });
  }
  EXPECT_GT(bytes[Precision::Fp32], 0);
  EXPECT_LT(bytes[Precision::Bf16], 0.55 * static_cast<double>(bytes[Precision::Fp32]));
}

}  // namespace
}  // namespace strata::parallel::testing
