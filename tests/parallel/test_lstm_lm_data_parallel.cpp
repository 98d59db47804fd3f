// fortunes-lstm (train_lm --arch lstm, issue 21) under data parallelism: the gradients each
// rank holds after HybridParallel's train_step on its share of a batch equal one process's
// gradients of the whole batch, to 1e-5 relative.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "comm_test_support.h"
#include "strata/core/models/lstm_lm.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/parallel/data/hybrid_parallel.h"

namespace {

using strata::parallel::Communicator;

constexpr int64_t kBatch = 8;  // divisible by 1, 2, 4
constexpr int64_t kContext = 12;
constexpr double kTolerance = 1e-5;

// Two layers, so that the gradient flows through the stacked recurrence; weights from a
// generator of its own (ranks are threads: the global one would interleave their draws),
// large enough that no gradient is tiny.
torch::nn::Sequential make_model() {
  torch::nn::Sequential lm = strata::core::make_lstm_lm(
      strata::core::LSTMLMOptions().vocab(256).d_model(24).layers(2).context(kContext));
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (auto& p : lm->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.3);
  return lm;
}

std::pair<at::Tensor, at::Tensor> batch() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const at::Tensor tokens = at::randint(0, 256, {kBatch, kContext + 1}, gen, at::kLong);
  return {tokens.slice(1, 0, kContext).contiguous(), tokens.slice(1, 1).contiguous()};
}

// Named gradients, each tensor once (the tied table appears under one name).
std::vector<std::pair<std::string, at::Tensor>> gradients(const torch::nn::Sequential& lm) {
  std::vector<std::pair<std::string, at::Tensor>> grads;
  std::vector<const void*> seen;
  for (const auto& item : lm->named_parameters()) {
    const at::Tensor& p = item.value();
    if (std::find(seen.begin(), seen.end(), p.unsafeGetTensorImpl()) != seen.end()) continue;
    seen.push_back(p.unsafeGetTensorImpl());
    grads.emplace_back(item.key(), p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
  }
  return grads;
}

void lstm_gradients_body(Communicator& comm) {
  const auto [inputs, targets] = batch();
  torch::nn::Sequential reference = make_model();
  strata::core::lm_loss(reference->forward(inputs), targets).backward();
  const auto expected = gradients(reference);

  torch::nn::Sequential lm = make_model();
  const int64_t share = kBatch / comm.size();
  const at::Tensor my_inputs = inputs.slice(0, comm.rank() * share, (comm.rank() + 1) * share);
  const at::Tensor my_targets = targets.slice(0, comm.rank() * share, (comm.rank() + 1) * share);
  strata::parallel::HybridParallel model(lm, comm.shared_from_this(), strata::core::lm_loss,
                                         my_inputs);
  ASSERT_EQ(model.data_parallel_size(), comm.size());
  // lr 0: the step leaves the weights alone; train_step zeroes gradients before, not after.
  torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.0));
  model.train_step(my_inputs, my_targets, sgd);

  const auto actual = gradients(lm);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    const at::Tensor& a = actual[i].second;
    const at::Tensor& e = expected[i].second;
    ASSERT_GT(e.norm().item<double>(), 0) << expected[i].first;
    EXPECT_LT((a - e).norm().item<double>() / e.norm().item<double>(), kTolerance)
        << "rank " << comm.rank() << " of " << comm.size() << ": " << actual[i].first;
  }
}

}  // namespace

STRATA_COMM_TEST(LSTMLMDataParallel, GradientsEqualOneProcessOnTheWholeBatch, lstm_gradients_body)
