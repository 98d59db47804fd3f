// DistributedDataParallel: gradients of N ranks, each on its shard of the global batch,
// equal the single-process gradients of the whole batch; replicas stay identical.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "comm_test_support.h"
#include "strata/parallel/control/control_plane.h"
#include "strata/parallel/data/distributed_data_parallel.h"

namespace {

using strata::parallel::Communicator;
using strata::parallel::CommunicatorPtr;
using strata::parallel::DistributedDataParallel;
using strata::parallel::DistributedDataParallelOptions;

constexpr int64_t kGlobalBatch = 48;  // divisible by 1, 2, 3, 4
constexpr double kTolerance = 1e-5;   // relative error, float32

// A small network with a frozen layer and a layer that forward never uses, so that both
// paths of the reducer are exercised.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(20, 64));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({64})));
    fc2 = register_module("fc2", torch::nn::Linear(64, 64));
    frozen = register_module("frozen", torch::nn::Linear(64, 64));
    unused = register_module("unused", torch::nn::Linear(64, 64));
    head = register_module("head", torch::nn::Linear(64, 5));
    // Initialized from a generator of its own: tests build nets on several threads at
    // once, and the global generator would interleave their draws.
    torch::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    for (auto& p : parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.2);
    for (auto& p : frozen->parameters()) p.set_requires_grad(false);
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = torch::relu(norm(fc1(x)));
    h = torch::relu(fc2(h));
    h = torch::tanh(frozen(h));
    return head(h);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, frozen{nullptr}, unused{nullptr}, head{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Net);

struct Batch {
  at::Tensor x, y;
};

Batch global_batch(int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  return {at::randn({kGlobalBatch, 20}, gen), at::randint(0, 5, {kGlobalBatch}, gen)};
}

Batch shard(const Batch& b, int rank, int ranks) {
  const int64_t n = kGlobalBatch / ranks;
  return {b.x.slice(0, rank * n, (rank + 1) * n), b.y.slice(0, rank * n, (rank + 1) * n)};
}

at::Tensor loss_of(Net& net, const Batch& b) {
  return torch::nn::functional::cross_entropy(net->forward(b.x), b.y);
}

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-12);
}

std::vector<at::Tensor> gradients(Net& net) {
  std::vector<at::Tensor> grads;
  for (auto& p : net->parameters()) {
    grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
  }
  return grads;
}

// Single-process reference: gradient of the mean loss over `steps` consecutive global
// batches (summed, as gradient accumulation does).
std::vector<at::Tensor> reference_gradients(int steps) {
  Net net;
  for (int s = 0; s < steps; ++s) loss_of(net, global_batch(s)).backward();
  return gradients(net);
}

void expect_gradients_match(Net& net, const std::vector<at::Tensor>& expected, int rank) {
  auto grads = gradients(net);
  ASSERT_EQ(grads.size(), expected.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    if (expected[i].abs().max().item<double>() == 0) {
      EXPECT_EQ(grads[i].abs().max().item<double>(), 0) << "rank " << rank << " parameter " << i;
    } else {
      EXPECT_LT(relative_error(grads[i], expected[i]), kTolerance)
          << "rank " << rank << " parameter " << i;
    }
  }
}

// The checks every backend runs, on each rank.
void check_gradients_equal_single_process(Communicator& comm) {
  const CommunicatorPtr self = comm.shared_from_this();
  Net net;
  // Tiny buckets, so that several all-reduces are in flight during backward.
  DistributedDataParallel ddp(
      net.ptr(), self,
      DistributedDataParallelOptions().bucket_cap_bytes(4096).first_bucket_cap_bytes(512));
  EXPECT_GT(ddp.num_buckets(), 3);
  loss_of(net, shard(global_batch(0), comm.rank(), comm.size())).backward();
  expect_gradients_match(net, reference_gradients(1), comm.rank());
}

void check_gradient_accumulation(Communicator& comm) {
  const CommunicatorPtr self = comm.shared_from_this();
  Net net;
  DistributedDataParallel ddp(net.ptr(), self);
  {
    auto guard = ddp.no_sync();
    loss_of(net, shard(global_batch(0), comm.rank(), comm.size())).backward();
    loss_of(net, shard(global_batch(1), comm.rank(), comm.size())).backward();
  }
  loss_of(net, shard(global_batch(2), comm.rank(), comm.size())).backward();
  expect_gradients_match(net, reference_gradients(3), comm.rank());
}

// Ten SGD steps: every replica ends bit-identical to the others and equal to the
// single-process run within the tolerance.
void check_training_steps(Communicator& comm) {
  const CommunicatorPtr self = comm.shared_from_this();
  Net reference;
  torch::optim::SGD reference_sgd(reference->parameters(),
                                  torch::optim::SGDOptions(0.1).momentum(0.9));
  Net net;
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  DistributedDataParallel ddp(net.ptr(), self,
                              DistributedDataParallelOptions().bucket_cap_bytes(8192));
  for (int step = 0; step < 10; ++step) {
    reference_sgd.zero_grad();
    loss_of(reference, global_batch(step)).backward();
    reference_sgd.step();
    sgd.zero_grad();
    loss_of(net, shard(global_batch(step), comm.rank(), comm.size())).backward();
    sgd.step();
  }
  at::Tensor mine = torch::cat([&] {
    std::vector<at::Tensor> flat;
    for (auto& p : net->parameters()) flat.push_back(p.detach().flatten());
    return flat;
  }());
  at::Tensor expected = torch::cat([&] {
    std::vector<at::Tensor> flat;
    for (auto& p : reference->parameters()) flat.push_back(p.detach().flatten());
    return flat;
  }());
  EXPECT_LT(relative_error(mine, expected), kTolerance) << "rank " << comm.rank();
  at::Tensor all = at::empty({comm.size(), mine.numel()}, mine.options());
  comm.allgather(mine, all)->wait();
  for (int r = 1; r < comm.size(); ++r) {
    EXPECT_TRUE(all[r].equal(all[0])) << "replica of rank " << r << " differs from rank 0";
  }
}

void check_initial_broadcast(Communicator& comm) {
  const CommunicatorPtr self = comm.shared_from_this();
  Net net;
  torch::NoGradGuard no_grad;
  for (auto& p : net->parameters()) p.add_(comm.rank());  // replicas start different
  DistributedDataParallel ddp(net.ptr(), self);
  Net fresh;
  auto a = net->parameters();
  auto b = fresh->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].equal(b[i])) << "parameter " << i;
}

using strata::parallel::testing::run_in_process;
using strata::parallel::testing::run_mpi;

class InProcessDataParallel : public testing::TestWithParam<int> {};

TEST_P(InProcessDataParallel, GradientsEqualSingleProcess) {
  run_in_process(GetParam(), check_gradients_equal_single_process);
}
TEST_P(InProcessDataParallel, NoSyncAccumulatesThenSynchronizes) {
  run_in_process(GetParam(), check_gradient_accumulation);
}
TEST_P(InProcessDataParallel, TenStepsMatchSingleProcess) {
  run_in_process(GetParam(), check_training_steps);
}
TEST_P(InProcessDataParallel, BroadcastsRankZeroAtConstruction) {
  run_in_process(GetParam(), check_initial_broadcast);
}
INSTANTIATE_TEST_SUITE_P(Ranks, InProcessDataParallel, testing::Values(1, 2, 3, 4));

TEST(MpiDataParallel, GradientsEqualSingleProcess) {
  run_mpi(check_gradients_equal_single_process);
}
TEST(MpiDataParallel, NoSyncAccumulatesThenSynchronizes) { run_mpi(check_gradient_accumulation); }
TEST(MpiDataParallel, TenStepsMatchSingleProcess) { run_mpi(check_training_steps); }
TEST(MpiDataParallel, BroadcastsRankZeroAtConstruction) { run_mpi(check_initial_broadcast); }

}  // namespace

// The same over Gloo, the data plane of strata-run jobs (2 ranks as threads).
namespace {
using strata::parallel::testing::run_gloo;
#define STRATA_GLOO_DDP_TEST(name, body)                                           \
  TEST(GlooDataParallel, name) {                                                   \
    if (!strata::parallel::gloo_available()) GTEST_SKIP() << "built without Gloo"; \
    run_gloo(2, body);                                                             \
  }
STRATA_GLOO_DDP_TEST(GradientsEqualSingleProcess, check_gradients_equal_single_process)
STRATA_GLOO_DDP_TEST(NoSyncAccumulatesThenSynchronizes, check_gradient_accumulation)
STRATA_GLOO_DDP_TEST(TenStepsMatchSingleProcess, check_training_steps)
STRATA_GLOO_DDP_TEST(BroadcastsRankZeroAtConstruction, check_initial_broadcast)
#undef STRATA_GLOO_DDP_TEST
}  // namespace
