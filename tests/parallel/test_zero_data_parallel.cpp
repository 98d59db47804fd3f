// ZeroDataParallel: every stage trains as the single-process run of the global batch does
// (which DistributedDataParallel's tests hold it to), with momentum SGD and AdamW, uneven
// shards, frozen parameters, gradient accumulation and clipping; and it holds less. Its
// sharded checkpoints load at any world size and stage, and without ZeRO.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "core/checkpoint_compare.h"
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

// ---------------------------------------------------------------- sharded checkpoints
// Saved with ZeRO 3 on 4 ranks (AdamW, uneven shards, a frozen layer), a checkpoint loads
// in one process without ZeRO and at other worlds and stages: the parameters and the
// optimizer state are those saved, bit for bit, and the next steps' losses and parameters
// are the uninterrupted run's.
namespace {

namespace fs = std::filesystem;
using strata::test::checkpoint_tensors;
using strata::test::TensorsByName;

constexpr int kSaveStep = 3, kMoreSteps = 2;
const std::set<std::string> kAllKinds = {"parameter", "buffer", "optimizer"};

struct Continuation {
  std::vector<double> losses;  // of the global batch, the steps after the checkpoint
  at::Tensor parameters;       // after them
};

// One step on this rank's part of global batch `step`; the global batch's loss.
double zero_step(ZeroDataParallel& zero, Communicator& comm, int step) {
  zero.zero_grad();
  const Batch b = shard(global_batch(step, 0), comm.rank(), comm.size());
  at::Tensor loss = loss_of(zero.forward(b.x), b, 1);
  loss.backward();
  zero.step();
  at::Tensor sum = loss.detach().reshape({1}).clone();
  comm.allreduce(sum)->wait();
  return sum.item<double>() / comm.size();
}

std::unique_ptr<ZeroDataParallel> make_zero(torch::nn::Sequential& net, Communicator& comm,
                                            int stage) {
  return std::make_unique<ZeroDataParallel>(
      net.ptr(), comm.shared_from_this(),
      [](std::vector<at::Tensor> shards) { return make_optimizer(Optim::AdamW, shards); },
      ZeroOptions().stage(stage).bucket_cap_bytes(4096).first_bucket_cap_bytes(512));
}

Continuation finish(ZeroDataParallel& zero, Communicator& comm, torch::nn::Sequential& net) {
  Continuation c;
  for (int step = kSaveStep; step < kSaveStep + kMoreSteps; ++step)
    c.losses.push_back(zero_step(zero, comm, step));
  zero.gather_parameters();
  c.parameters = flat_parameters(net).clone();
  return c;
}

// Trains kSaveStep steps at ZeRO 3, saves to `path`, goes on for kMoreSteps.
Continuation save_and_continue(Communicator& comm, const std::string& path) {
  torch::nn::Sequential net = make_net();
  auto zero = make_zero(net, comm, 3);
  for (int step = 0; step < kSaveStep; ++step) zero_step(*zero, comm, step);
  zero->save_checkpoint(path, zero->optimizer(), kSaveStep, {{"saved_by", "zero 3"}});
  return finish(*zero, comm, net);
}

// Loads `path` at `stage` on the ranks of `comm` into a net that starts elsewhere, saves
// it again (sharded) to `again`, and trains on.
Continuation resume_zero(Communicator& comm, int stage, const std::string& path,
                         const std::string& again) {
  torch::nn::Sequential net = make_net();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(0.5);  // the load must replace these
  }
  auto zero = make_zero(net, comm, stage);
  nlohmann::json extra;
  EXPECT_EQ(zero->load_checkpoint(path, zero->optimizer(), &extra), kSaveStep);
  EXPECT_EQ(extra.value("saved_by", ""), "zero 3");
  zero->save_checkpoint(again, zero->optimizer(), kSaveStep);
  return finish(*zero, comm, net);
}

// The same in one process without ZeRO: core::load_checkpoint and a plain AdamW.
Continuation resume_plain(const std::string& path, const std::string& again) {
  torch::nn::Sequential net = make_net();
  std::vector<at::Tensor> trainable;
  for (auto& p : net->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  auto optimizer = make_optimizer(Optim::AdamW, trainable);
  EXPECT_EQ(strata::core::load_checkpoint(path, *net, optimizer.get()), kSaveStep);
  strata::core::save_checkpoint(again, *net, optimizer.get(), kSaveStep);
  Continuation c;
  for (int step = kSaveStep; step < kSaveStep + kMoreSteps; ++step) {
    optimizer->zero_grad();
    const Batch b = global_batch(step, 0);
    at::Tensor loss = loss_of(net->forward(b.x), b, 1);
    loss.backward();
    optimizer->step();
    c.losses.push_back(loss.item<double>());
  }
  c.parameters = flat_parameters(net).clone();
  return c;
}

void expect_same_continuation(const Continuation& got, const Continuation& expected) {
  ASSERT_EQ(got.losses.size(), expected.losses.size());
  for (size_t i = 0; i < got.losses.size(); ++i)
    EXPECT_NEAR(got.losses[i], expected.losses[i], 1e-5 * std::abs(expected.losses[i]))
        << "loss of step " << kSaveStep + i;
  EXPECT_LT(relative_error(got.parameters, expected.parameters), kTolerance);
}

// Every parameter, buffer and optimizer state tensor of `got` equals `expected`'s.
void expect_same_tensors(const std::string& got, const std::string& expected) {
  const TensorsByName a = checkpoint_tensors(got, kAllKinds);
  const TensorsByName b = checkpoint_tensors(expected, kAllKinds);
  ASSERT_EQ(a.size(), b.size()) << got << " and " << expected;
  for (const auto& [name, tensor] : b) {
    ASSERT_TRUE(a.count(name)) << got << " lacks " << name;
    EXPECT_TRUE(a.at(name).equal(tensor)) << name << " differs in " << got;
  }
}

}  // namespace

TEST(ZeroCheckpoint, SavedAtZero3On4RanksLoadsAnywhere) {
  const fs::path dir =
      fs::temp_directory_path() / ("strata-zero-ckpt-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = (dir / "step-00000003").string();
  std::vector<Continuation> saved(4);
  run_in_process(4,
                 [&](Communicator& comm) { saved[comm.rank()] = save_and_continue(comm, path); });

  // Four shard files and a manifest listing them, written last.
  const nlohmann::json manifest = nlohmann::json::parse(std::ifstream(path + "/manifest.json"));
  EXPECT_EQ(manifest.value("layout", ""), "sharded");
  ASSERT_EQ(manifest.at("shards").size(), 4u);
  for (int r = 0; r < 4; ++r) {
    const std::string file = "shard-0000" + std::to_string(r) + "-of-00004.bin";
    EXPECT_EQ(manifest["shards"][r]["file"], file);
    EXPECT_EQ(fs::file_size(path + "/" + file), manifest["shards"][r]["nbytes"].get<uint64_t>());
  }
  EXPECT_FALSE(fs::exists(path + ".tmp-" + std::to_string(::getpid())));

  {
    SCOPED_TRACE("one process, no ZeRO");
    const std::string again = (dir / "plain").string();
    expect_same_continuation(resume_plain(path, again), saved[0]);
    expect_same_tensors(again, path);
  }
  for (const auto& [world, stage] :
       std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {3, 2}, {2, 3}, {4, 3}}) {
    SCOPED_TRACE("ZeRO " + std::to_string(stage) + " on " + std::to_string(world) + " ranks");
    const std::string again =
        (dir / ("again-" + std::to_string(world) + "-" + std::to_string(stage))).string();
    std::vector<Continuation> resumed(world);
    run_in_process(world, [&](Communicator& comm) {
      resumed[comm.rank()] = resume_zero(comm, stage, path, again);
    });
    for (const Continuation& c : resumed) expect_same_continuation(c, saved[0]);
    expect_same_tensors(again, path);
  }
  fs::remove_all(dir);
}
