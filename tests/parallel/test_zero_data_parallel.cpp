// ZeroDataParallel: every stage trains as the single-process run of the global batch does
// (which DistributedDataParallel's tests hold it to), with momentum SGD and AdamW, uneven
// shards, frozen parameters, gradient accumulation and clipping; and it holds less.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/data/zero_data_parallel.h"

namespace {

using strata::parallel::Communicator;
using strata::parallel::ZeroDataParallel;
using strata::parallel::ZeroOptions;

constexpr int64_t kGlobalBatch = 48;  // divisible by 1, 2, 3, 4
constexpr double kTolerance = 1e-5;   // relative error, float32
constexpr int kSteps = 10;

// Layers of odd sizes (777, 1102 and 150 trainable elements: no world of 2-4 divides
// them) and a frozen layer in the middle.
torch::nn::Sequential make_net() {
  torch::nn::Sequential net(torch::nn::Linear(20, 37), torch::nn::Tanh(), torch::nn::Linear(37, 29),
                            torch::nn::ReLU(), torch::nn::Linear(29, 29), torch::nn::Tanh(),
                            torch::nn::Linear(29, 5));
  // A generator of its own: ranks build nets on several threads at once.
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (auto& p : net->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.3);
  for (auto& p : net[4]->parameters()) p.set_requires_grad(false);
  return net;
}

enum class Optim { SGD, AdamW };

std::unique_ptr<torch::optim::Optimizer> make_optimizer(Optim kind,
                                                        std::vector<at::Tensor> params) {
  if (kind == Optim::SGD) {
    return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9));
  }
  return std::make_unique<torch::optim::AdamW>(params,
                                               torch::optim::AdamWOptions(0.01).weight_decay(0.1));
}

struct Batch {
  at::Tensor x, y;
};

// Micro-batch `micro` of step `step`, global.
Batch global_batch(int step, int micro) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + 10 * step + micro);
  return {at::randn({kGlobalBatch, 20}, gen), at::randint(0, 5, {kGlobalBatch}, gen)};
}

Batch shard(const Batch& b, int rank, int ranks) {
  const int64_t n = kGlobalBatch / ranks;
  return {b.x.slice(0, rank * n, (rank + 1) * n), b.y.slice(0, rank * n, (rank + 1) * n)};
}

at::Tensor loss_of(const at::Tensor& logits, const Batch& b, int accumulate) {
  return torch::nn::functional::cross_entropy(logits, b.y) / accumulate;
}

at::Tensor flat_parameters(torch::nn::Sequential& net) {
  std::vector<at::Tensor> flat;
  for (auto& p : net->parameters()) flat.push_back(p.detach().flatten());
  return torch::cat(flat);
}

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-12);
}

struct Setup {
  int stage;
  Optim optim;
  int accumulate;
  double clip;  // 0: none
};

std::string describe(const Setup& s) {
  return "stage " + std::to_string(s.stage) +
         (s.optim == Optim::SGD ? " sgd(momentum)" : " adamw") + " accumulate " +
         std::to_string(s.accumulate) + " clip " + std::to_string(s.clip);
}

// The single-process run on the global batches; also each step's gradient norm.
at::Tensor reference_parameters(const Setup& s, std::vector<double>* norms) {
  torch::nn::Sequential net = make_net();
  std::vector<at::Tensor> trainable;
  for (auto& p : net->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  auto optimizer = make_optimizer(s.optim, trainable);
  for (int step = 0; step < kSteps; ++step) {
    optimizer->zero_grad();
    for (int micro = 0; micro < s.accumulate; ++micro) {
      const Batch b = global_batch(step, micro);
      loss_of(net->forward(b.x), b, s.accumulate).backward();
    }
    norms->push_back(torch::nn::utils::clip_grad_norm_(trainable, s.clip > 0 ? s.clip : 1e30));
    optimizer->step();
  }
  return flat_parameters(net);
}

void check_matches_single_process(Communicator& comm, const Setup& s) {
  SCOPED_TRACE(describe(s) + " on rank " + std::to_string(comm.rank()) + " of " +
               std::to_string(comm.size()));
  std::vector<double> expected_norms;
  const at::Tensor expected = reference_parameters(s, &expected_norms);
  torch::nn::Sequential net = make_net();
  const at::Tensor frozen_before = flat_parameters(net).clone();
  // Small buckets, so that several reduce-scatters are in flight during backward.
  ZeroDataParallel zero(
      net.ptr(), comm.shared_from_this(),
      [&](std::vector<at::Tensor> shards) { return make_optimizer(s.optim, std::move(shards)); },
      ZeroOptions().stage(s.stage).bucket_cap_bytes(4096).first_bucket_cap_bytes(512));
  for (int step = 0; step < kSteps; ++step) {
    zero.zero_grad();
    for (int micro = 0; micro < s.accumulate; ++micro) {
      const Batch b = shard(global_batch(step, micro), comm.rank(), comm.size());
      if (micro + 1 < s.accumulate) {
        auto guard = zero.no_sync();
        loss_of(zero.forward(b.x), b, s.accumulate).backward();
      } else {
        loss_of(zero.forward(b.x), b, s.accumulate).backward();
      }
    }
    const double norm = zero.clip_grad_norm(s.clip);
    EXPECT_NEAR(norm, expected_norms[step], 1e-5 * expected_norms[step]) << "step " << step;
    zero.step();
  }
  zero.gather_parameters();
  const at::Tensor mine = flat_parameters(net);
  EXPECT_LT(relative_error(mine, expected), kTolerance);
  // The frozen layer (elements 1879 .. 2749 of the flat parameters) did not move.
  const int64_t frozen_begin = 20 * 37 + 37 + 37 * 29 + 29;
  const int64_t frozen_numel = 29 * 29 + 29;
  EXPECT_TRUE(mine.narrow(0, frozen_begin, frozen_numel)
                  .equal(frozen_before.narrow(0, frozen_begin, frozen_numel)));
  // Every rank holds the same model.
  at::Tensor all = at::empty({comm.size(), mine.numel()}, mine.options());
  comm.allgather(mine, all)->wait();
  for (int r = 1; r < comm.size(); ++r) {
    EXPECT_TRUE(all[r].equal(all[0])) << "rank " << r << "'s parameters differ from rank 0's";
  }
}

std::vector<Setup> setups() {
  std::vector<Setup> all;
  for (int stage : {1, 2, 3}) {
    for (Optim optim : {Optim::SGD, Optim::AdamW}) {
      for (int accumulate : {1, 3}) all.push_back({stage, optim, accumulate, 0});
    }
    all.push_back({stage, Optim::SGD, 1, 0.5});  // the norm is about 1-3: clips
  }
  return all;
}

void check_every_setup(Communicator& comm) {
  for (const Setup& s : setups()) check_matches_single_process(comm, s);
}

// What each stage keeps after a step: stage 1 full parameters and gradient buffers,
// stage 2 no full gradients, stage 3 not even full parameters; the optimizer state 1/N.
void check_state_shrinks(Communicator& comm) {
  std::vector<int64_t> bytes;
  for (int stage : {1, 2, 3}) {
    torch::nn::Sequential net = make_net();
    ZeroDataParallel zero(
        net.ptr(), comm.shared_from_this(),
        [](std::vector<at::Tensor> shards) { return make_optimizer(Optim::AdamW, shards); },
        ZeroOptions().stage(stage));
    const Batch b = shard(global_batch(0, 0), comm.rank(), comm.size());
    loss_of(zero.forward(b.x), b, 1).backward();
    zero.step();
    bytes.push_back(zero.state_bytes());
    for (const auto& p : net[0]->parameters()) {
      EXPECT_EQ(p.grad().defined(), stage == 1) << "stage " << stage;
      EXPECT_EQ(p.storage().data() != nullptr, stage != 3) << "stage " << stage;
    }
  }
  // 2029 trainable + 870 frozen elements of 4 bytes; each bucket padded by at most n - 1.
  const int64_t trainable = 4 * (777 + 1102 + 150), frozen = 4 * 870;
  const int n = comm.size();
  const int64_t shard = 4 * ((2029 + n - 1) / n + 3);  // this rank's elements, at most
  EXPECT_LE(bytes[0], 2 * trainable + frozen + 5 * shard) << "stage 1";
  EXPECT_LE(bytes[1], trainable + frozen + 4 * shard) << "stage 2";
  EXPECT_LE(bytes[2], frozen + 5 * shard) << "stage 3";
  if (n > 1) {
    EXPECT_LT(bytes[1], bytes[0]);
    EXPECT_LT(bytes[2], bytes[1]);
  }
}

using strata::parallel::testing::run_in_process;
using strata::parallel::testing::run_mpi;

class InProcessZero : public testing::TestWithParam<int> {};
TEST_P(InProcessZero, EveryStageMatchesSingleProcess) {
  run_in_process(GetParam(), check_every_setup, std::chrono::seconds(300));
}
TEST_P(InProcessZero, StagesHoldLessState) { run_in_process(GetParam(), check_state_shrinks); }
INSTANTIATE_TEST_SUITE_P(Ranks, InProcessZero, testing::Values(1, 2, 3, 4));

TEST(MpiZero, EveryStageMatchesSingleProcess) { run_mpi(check_every_setup); }
TEST(MpiZero, StagesHoldLessState) { run_mpi(check_state_shrinks); }

TEST(Zero, RefusesWhatItCannotShard) {
  auto comm = strata::parallel::InProcessCommunicator::create(1).front();
  auto sgd = [](std::vector<at::Tensor> shards) { return make_optimizer(Optim::SGD, shards); };
  strata::parallel::testing::expect_error(
      [&] { ZeroDataParallel(make_net().ptr(), comm, sgd, ZeroOptions().stage(0)); },
      "ZeRO stage: got 0, expected 1, 2 or 3");
  // One layer twice: its weights are tied.
  torch::nn::Linear shared(4, 4);
  torch::nn::Sequential tied(shared, torch::nn::Tanh(), shared);
  strata::parallel::testing::expect_error(
      [&] { ZeroDataParallel(tied.ptr(), comm, sgd, ZeroOptions().stage(3)); },
      "shared with an earlier layer");
}

}  // namespace
