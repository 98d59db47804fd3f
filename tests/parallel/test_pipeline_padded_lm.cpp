// fortunes-lm on variable-length windows through the pipeline (core/models/padded_lm.h):
// its stages pass {hidden states, key-padding mask}, two tensors whose shapes change from
// step to step. Trained for a few steps under every registered schedule, as a one-process
// pipeline (K threads on CPU devices) and over an mpirun job, its losses equal the
// unpipelined model's within 1e-5; the mask keeps each real token to its own sequence.
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include "comm_test_support.h"
#include "sequential_schedule.h"
#include "strata/core/models/padded_lm.h"
#include "strata/core/parameters.h"
#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/parallel/pipeline/schedule_registry.h"

namespace strata::parallel::testing {
namespace {

constexpr double kTolerance = 1e-5;  // relative, float32
constexpr int64_t kBatch = 8, kContext = 12;
constexpr int kSteps = 3;

core::TransformerLMOptions options() {
  return core::TransformerLMOptions().d_model(16).heads(2).ffn(32).layers(6).context(kContext);
}

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Step `step`'s windows of random tokens, cut to lengths in [context/2, context] and padded
// on the left, as train_lm --variable-length makes them; and their mean real tokens per row.
struct Batch {
  at::Tensor inputs, targets;
  double mean_tokens;
};
Batch make_batch(int step) {
  auto gen = generator(100 + static_cast<uint64_t>(step));
  const at::Tensor tokens = at::randint(256, {kBatch, kContext + 1}, gen, at::kLong);
  const at::Tensor drawn = at::randint(kContext / 2, kContext + 1, {kBatch}, gen, at::kLong);
  const std::vector<int64_t> lengths(drawn.data_ptr<int64_t>(), drawn.data_ptr<int64_t>() + kBatch);
  auto [inputs, targets] =
      core::pad_windows(tokens.narrow(1, 0, kContext), tokens.narrow(1, 1, kContext), lengths);
  return {inputs, targets, targets.ne(core::kPadToken).sum().item<double>() / kBatch};
}

torch::nn::Sequential make_model() {
  torch::manual_seed(7);
  return core::make_padded_transformer_lm(options());
}

// The losses of kSteps SGD steps of the whole model in one process.
std::vector<double> single_process_losses() {
  auto model = make_model();
  torch::optim::SGD sgd(core::unique_parameters(*model), 0.5);
  std::vector<double> losses;
  for (int step = 0; step < kSteps; ++step) {
    const Batch b = make_batch(step);
    sgd.zero_grad();
    const at::Tensor loss =
        core::padded_lm_loss(model->forward<at::Tensor>(b.inputs), b.targets, b.mean_tokens);
    loss.backward();
    sgd.step();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

struct PaddedCase {
  std::string schedule;
  int micro_batches;
};

// The same steps on a K-stage pipeline over `world`: K threads of this process when the
// world is one process, else one stage per rank.
void check_pipelined_losses(Communicator& world, int stages, const PaddedCase& c) {
  SCOPED_TRACE(c.schedule + " M=" + std::to_string(c.micro_batches));
  static const std::vector<double> expected = single_process_losses();
  double mean_tokens = kContext;
  const PipelineLoss loss = [&mean_tokens](const at::Tensor& logits, const at::Tensor& targets) {
    return core::padded_lm_loss(logits, targets, mean_tokens);
  };
  const int virtual_stages = schedule_entry(c.schedule).supports_virtual_stages ? 2 : 1;
  HybridParallel model(make_model(), world.shared_from_this(), loss, make_batch(0).inputs,
                       HybridParallelOptions().pipeline_parallel(stages).pipeline(
                           PipelineParallelOptions()
                               .schedule(c.schedule)
                               .micro_batches(c.micro_batches)
                               .virtual_stages(virtual_stages)));
  torch::optim::SGD sgd(model.parameters(), 0.5);
  for (int step = 0; step < kSteps; ++step) {
    const Batch b = make_batch(step);
    mean_tokens = b.mean_tokens;
    const double got = model.train_step(b.inputs, b.targets, sgd);
    EXPECT_NEAR(got, expected[static_cast<size_t>(step)],
                kTolerance * expected[static_cast<size_t>(step)])
        << "step " << step << ", " << b.inputs.size(1) << " columns";
  }
}

std::vector<PaddedCase> padded_cases(int stages) {
  register_sequential_schedule();
  std::vector<PaddedCase> cases;
  for (const auto& name : schedule_names())
    for (const int micro_batches : {1, 2 * stages})
      if (!schedule_entry(name).supports_virtual_stages || micro_batches % stages == 0)
        cases.push_back({name, micro_batches});
  return cases;
}

TEST(PaddedLM, PaddedBatchGivesEachSequenceItsOwnLogits) {
  auto model = make_model();
  model->eval();
  torch::NoGradGuard no_grad;
  const Batch b = make_batch(0);
  const at::Tensor logits = model->forward<at::Tensor>(b.inputs);
  const int64_t columns = b.inputs.size(1);
  ASSERT_LT(b.mean_tokens, static_cast<double>(columns)) << "the batch should hold padding";
  for (int64_t row = 0; row < kBatch; ++row) {
    const int64_t length = b.inputs[row].ne(core::kPadToken).sum().item<int64_t>();
    const at::Tensor alone =
        model->forward<at::Tensor>(b.inputs[row].narrow(0, columns - length, length).unsqueeze(0));
    EXPECT_TRUE(at::allclose(logits[row].narrow(0, columns - length, length), alone[0], 1e-5, 1e-5))
        << "row " << row << " of " << length << " real tokens";
  }
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
}

TEST(PaddedLM, UnpaddedBatchGivesThePlainModelsLogits) {
  torch::manual_seed(7);
  auto plain = core::make_transformer_lm(options());
  auto padded = make_model();
  const at::Tensor tokens = at::randint(256, {3, kContext}, generator(1), at::kLong);
  EXPECT_TRUE(at::equal(plain->forward(tokens), padded->forward<at::Tensor>(tokens)));
  EXPECT_NEAR(core::padded_lm_loss(plain->forward(tokens), tokens, kContext).item<double>(),
              core::lm_loss(plain->forward(tokens), tokens).item<double>(), 1e-6);
}

TEST(PaddedLM, RejectsBadInputs) {
  expect_error(
      [] {
        core::pad_windows(at::zeros({2, 4}, at::kLong), at::zeros({2, 4}, at::kLong), {5, 1});
      },
      "pad_windows: length 5, expected 1 to 4");
  auto model = make_model();
  at::Tensor tokens = at::full({1, 4}, 300, at::kLong);
  tokens[0][0] = core::kPadToken;
  expect_error([&] { model->forward<at::Tensor>(tokens); }, "or be -1 (padding)");
}

TEST(PipelinePaddedLM, OneProcessPipelineMatchesSingleProcess) {
  for (const PaddedCase& c : padded_cases(2))
    run_in_process(1, [&](Communicator& world) { check_pipelined_losses(world, 2, c); });
}

// Over the whole mpirun job, K = the world size.
TEST(MpiPipelinePaddedLM, PipelineMatchesSingleProcess) {
  run_mpi([](Communicator& world) {
    for (const PaddedCase& c : padded_cases(world.size()))
      check_pipelined_losses(world, world.size(), c);
  });
}

}  // namespace
}  // namespace strata::parallel::testing
