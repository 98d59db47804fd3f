// DistributedDataParallel: gradients of N ranks, each on its shard of the global batch,
// equal the single-process gradients of the whole batch; replicas stay identical.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "strata/core/flight_recorder.h"
#include "strata/parallel/comm/recording_communicator.h"
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

// Four equal layers, every parameter used: with a bucket cap below one layer's bytes each
// layer is a bucket of its own, so a reducer that overlaps launches a layer's all-reduce
// while the layers below it are still in backward.
constexpr int kLayers = 4;
torch::nn::Sequential make_stack() {
  torch::nn::Sequential stack;
  for (int i = 0; i < kLayers; ++i) {
    stack->push_back(torch::nn::Linear(32, 32));
    stack->push_back(torch::nn::Tanh());
  }
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (auto& p : stack->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.3);
  return stack;
}

// Overlap: the first bucket's all-reduce is launched while backward is still running,
// before the first layer's gradient exists, and so is every bucket but the first layer's.
// A reducer that launched its all-reduces only when backward ends fails both.
void check_allreduce_overlaps_backward(Communicator& comm) {
  // This rank's own recorder: the communicator wrapper enters each all-reduce when it is
  // called (not when it finishes), a tensor hook each layer's weight gradient when autograd
  // has computed it (before it is accumulated and the reducer hears of it).
  strata::core::FlightRecorder recorder(256);
  torch::nn::Sequential stack = make_stack();
  DistributedDataParallel ddp(
      stack.ptr(), strata::parallel::record_operations(comm.shared_from_this(), recorder),
      DistributedDataParallelOptions().bucket_cap_bytes(4096).first_bucket_cap_bytes(512));
  ASSERT_EQ(ddp.num_buckets(), kLayers);
  for (int i = 0; i < kLayers; ++i) {
    stack[2 * i]->named_parameters()["weight"].register_hook([&recorder, i](const at::Tensor&) {
      recorder.end(recorder.begin("gradient of layer " + std::to_string(i)));
    });
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + comm.rank());
  stack->forward(at::randn({8, 32}, gen)).square().mean().backward();

  std::vector<strata::core::FlightRecord> records = recorder.finished();
  for (auto& r : recorder.in_progress()) records.push_back(r);
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
  std::vector<std::string> events;  // "allreduce" or "gradient of layer <i>", in order
  std::string order;
  for (const auto& r : records) {
    const bool allreduce = r.description.rfind("allreduce", 0) == 0;
    if (allreduce || r.description.rfind("gradient", 0) == 0) {
      events.push_back(allreduce ? "allreduce" : r.description);
      order += events.back() + "; ";
    }
  }
  const auto first_layer = std::find(events.begin(), events.end(), "gradient of layer 0");
  ASSERT_NE(first_layer, events.end()) << "no gradient for layer 0: " << order;
  const auto first_allreduce = std::find(events.begin(), events.end(), "allreduce");
  EXPECT_LT(first_allreduce - events.begin(), first_layer - events.begin())
      << "rank " << comm.rank() << ": no all-reduce before backward reached layer 0: " << order;
  EXPECT_EQ(std::count(events.begin(), first_layer, "allreduce"), kLayers - 1)
      << "rank " << comm.rank() << ": " << order;
  EXPECT_EQ(std::count(events.begin(), events.end(), "allreduce"), kLayers)
      << "rank " << comm.rank() << ": " << order;
}

// Aliasing: after each step every trained parameter's .grad is a slice of its bucket's
// flat buffer, at the same address every step, and the slices cover the buffers. A reducer
// that copied gradients into the buckets and back, or reallocated them, fails.
void check_gradients_live_in_buckets(Communicator& comm) {
  Net net;
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  DistributedDataParallel ddp(
      net.ptr(), comm.shared_from_this(),
      DistributedDataParallelOptions().bucket_cap_bytes(4096).first_bucket_cap_bytes(512));
  const std::vector<at::Tensor> buckets = ddp.bucket_buffers();
  ASSERT_EQ(static_cast<int64_t>(buckets.size()), ddp.num_buckets());
  int64_t bucket_numel = 0;
  for (const auto& b : buckets) bucket_numel += b.numel();
  std::map<std::string, const void*> address;  // each gradient's address after step 0
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    loss_of(net, shard(global_batch(step), comm.rank(), comm.size())).backward();
    sgd.step();
    int64_t covered = 0;
    for (const auto& item : net->named_parameters()) {
      if (!item.value().requires_grad()) continue;
      const std::string where = "rank " + std::to_string(comm.rank()) + " step " +
                                std::to_string(step) + " " + item.key();
      const at::Tensor& grad = item.value().grad();
      ASSERT_TRUE(grad.defined()) << where;
      const auto owner = std::find_if(buckets.begin(), buckets.end(), [&](const at::Tensor& b) {
        const auto* begin = static_cast<const char*>(b.data_ptr());
        const auto* slice = static_cast<const char*>(grad.data_ptr());
        return grad.storage().is_alias_of(b.storage()) && slice >= begin &&
               slice + grad.nbytes() <= begin + b.nbytes();
      });
      EXPECT_TRUE(owner != buckets.end()) << where << ": .grad is not a slice of any bucket";
      covered += grad.numel();
      if (step == 0) {
        address[item.key()] = grad.data_ptr();
      } else {
        EXPECT_EQ(grad.data_ptr(), address[item.key()]) << where << ": .grad moved";
      }
    }
    EXPECT_EQ(covered, bucket_numel) << "rank " << comm.rank() << " step " << step;
  }
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
TEST_P(InProcessDataParallel, AllreduceStartsDuringBackward) {
  run_in_process(GetParam(), check_allreduce_overlaps_backward);
}
TEST_P(InProcessDataParallel, GradientsAreSlicesOfTheBuckets) {
  run_in_process(GetParam(), check_gradients_live_in_buckets);
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
