// Compression of the experts of a checkpoint: stacks found by name, calibration from a
// pluggable source, GPTQ better than round-to-nearest on the layer's output, the file
// written runs the same experts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/test_util.h"
#include "strata/core/checkpoint.h"
#include "strata/moe/qmoe_compress.h"

namespace strata::moe {
namespace {

using strata::test::error_of;
using strata::test::TempDir;

// A checkpoint with one expert stack (with biases), one without biases, and non-expert
// tensors, among them a 3-D "w_in" without its w_out.
core::CheckpointContents synthetic_checkpoint() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  core::CheckpointContents c;
  c.tensors.push_back({"embed.weight", "parameter", at::randn({10, 24}, gen)});
  c.tensors.push_back({"blocks.0.moe.w_in", "parameter", at::randn({3, 40, 24}, gen)});
  c.tensors.push_back({"blocks.0.moe.b_in", "parameter", at::randn({3, 40}, gen)});
  c.tensors.push_back({"blocks.0.moe.w_out", "parameter", at::randn({3, 24, 40}, gen)});
  c.tensors.push_back({"blocks.0.moe.b_out", "parameter", at::randn({3, 24}, gen)});
  c.tensors.push_back({"blocks.1.moe.w_in", "parameter", at::randn({2, 33, 24}, gen)});
  c.tensors.push_back({"blocks.1.moe.w_out", "parameter", at::randn({2, 24, 33}, gen)});
  c.tensors.push_back({"blocks.1.moe.step", "buffer", at::zeros({1}, at::kLong)});
  c.tensors.push_back({"lonely.w_in", "parameter", at::randn({2, 3, 4}, gen)});
  return c;
}

TEST(QmoeCompress, FindsExpertStacksInACheckpoint) {
  TempDir dir;
  core::write_checkpoint(dir / "ckpt", synthetic_checkpoint(), 7, {{"model", "test"}});
  nlohmann::json extra;
  const auto tensors = read_checkpoint_tensors(dir / "ckpt", &extra);
  EXPECT_EQ(extra["model"], "test");
  EXPECT_EQ(tensors.size(), 9u);
  const std::vector<ExpertStack> stacks = find_expert_stacks(tensors);
  ASSERT_EQ(stacks.size(), 2u);
  EXPECT_EQ(stacks[0].name, "blocks.0.moe");
  EXPECT_EQ(stacks[0].experts(), 3);
  EXPECT_TRUE(at::equal(stacks[0].b_in, tensors.at("blocks.0.moe.b_in")));
  EXPECT_EQ(stacks[1].name, "blocks.1.moe");
  EXPECT_TRUE(at::equal(stacks[1].b_out, at::zeros({2, 24}))) << "a missing bias is zeros";
  auto bad = tensors;
  bad["blocks.0.moe.w_out"] = at::randn({3, 24, 41});
  EXPECT_NE(error_of([&] { find_expert_stacks(bad); }).find("expert stack 'blocks.0.moe'"),
            std::string::npos);
}

TEST(QmoeCompress, GptqOnRoutedTokensBeatsRoundToNearestAndTheFileRunsTheSame) {
  TempDir dir;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const auto tensors = [] {
    std::map<std::string, at::Tensor> t;
    for (auto& item : synthetic_checkpoint().tensors) t.emplace(item.name, item.tensor);
    return t;
  }();
  const ExpertStack stack = find_expert_stacks(tensors)[0];
  // Recorded routed tokens with correlations; expert 2 gets none (it is then rounded to
  // nearest by the dampening: no error, no crash).
  const at::Tensor mixing = at::randn({5, 24}, gen);
  const at::Tensor tokens =
      at::mm(at::randn({600, 5}, gen), mixing) + 0.05 * at::randn({600, 24}, gen);
  const at::Tensor experts = at::randint(2, {600}, gen);
  RecordedCalibration recorded({{"blocks.0.moe.tokens", tokens}, {"blocks.0.moe.experts", experts}},
                               "test");
  EXPECT_EQ(recorded.expert_inputs(stack, 0, 1000).size(0), (experts == 0).sum().item<int64_t>());
  EXPECT_EQ(recorded.expert_inputs(stack, 1, 100).size(0), 100);
  EXPECT_EQ(recorded.expert_inputs(stack, 2, 100).size(0), 0);

  QmoeLayerReport gptq_report, rtn_report;
  const QmoeLayer gptq = compress_expert_stack(
      stack, recorded, QmoeCompressOptions().calibration_tokens(256), &gptq_report);
  compress_expert_stack(stack, recorded,
                        QmoeCompressOptions().calibration_tokens(256).round_to_nearest(true),
                        &rtn_report);
  EXPECT_EQ(gptq_report.calibration_tokens, 512);
  EXPECT_EQ(gptq_report.rounded_to_nearest, 0);
  EXPECT_LT(gptq_report.relative_output_error, 0.5 * rtn_report.relative_output_error)
      << gptq_report.to_json().dump() << " vs " << rtn_report.to_json().dump();

  QmoeModel model;
  model.layers.push_back(gptq);
  write_qmoe(dir / "m.qmoe", model);
  CompressedExperts loaded = make_compressed_experts(read_qmoe(dir / "m.qmoe").layers[0]);
  const at::Tensor x = tokens.narrow(0, 0, 7);
  for (int64_t e = 0; e < 3; ++e) {
    const at::Tensor w_in = ternary_decode(gptq.w_in[e]), w_out = ternary_decode(gptq.w_out[e]);
    const at::Tensor dense =
        at::linear(at::gelu(at::linear(x, w_in, stack.b_in[e])), w_out, stack.b_out[e]);
    EXPECT_TRUE(at::allclose(loaded->forward(e, x), dense, 1e-4, 1e-4)) << "expert " << e;
  }
  EXPECT_NE(error_of([&] {
              recorded.expert_inputs(find_expert_stacks(tensors)[1], 0, 10);
            }).find("no 'blocks.1.moe.tokens'"),
            std::string::npos);
}

TEST(QmoeCompress, GaussianCalibrationIsDeterministic) {
  std::map<std::string, at::Tensor> tensors;
  for (auto& item : synthetic_checkpoint().tensors) tensors.emplace(item.name, item.tensor);
  const ExpertStack stack = find_expert_stacks(tensors)[1];
  GaussianCalibration a(3), b(3), c(4);
  EXPECT_TRUE(at::equal(a.expert_inputs(stack, 1, 20), b.expert_inputs(stack, 1, 20)));
  EXPECT_FALSE(at::equal(a.expert_inputs(stack, 1, 20), c.expert_inputs(stack, 1, 20)));
  EXPECT_FALSE(at::equal(a.expert_inputs(stack, 0, 20), a.expert_inputs(stack, 1, 20)));
}

TEST(QmoeCompress, RoutedTokenRecorderKeepsTheFirstTokensOfEachExpert) {
  TempDir dir;
  RoutedTokenRecorder recorder(3);
  const at::Tensor a = at::randn({5, 4}), b = at::randn({4, 4});
  recorder.record("blocks.0.moe", a,
                  at::tensor({0, 1, 0, 0, 0}, at::kLong));  // expert 0: 4 rows, keeps 3
  recorder.record("blocks.0.moe", b, at::tensor({1, 2, 0, 1}, at::kLong));
  EXPECT_EQ(recorder.tokens("blocks.0.moe", 0), 3);
  EXPECT_EQ(recorder.tokens("blocks.0.moe", 1), 3);
  EXPECT_EQ(recorder.tokens("blocks.0.moe", 2), 1);
  EXPECT_EQ(recorder.tokens("blocks.1.moe", 0), 0);
  recorder.save(dir / "tokens");
  RecordedCalibration saved(read_checkpoint_tensors(dir / "tokens"), "saved");
  std::map<std::string, at::Tensor> stack_tensors{{"blocks.0.moe.w_in", at::zeros({3, 2, 4})},
                                                  {"blocks.0.moe.w_out", at::zeros({3, 4, 2})}};
  const ExpertStack stack = find_expert_stacks(stack_tensors)[0];
  const at::Tensor expert0 = saved.expert_inputs(stack, 0, 10);
  EXPECT_TRUE(at::equal(expert0, at::stack({a[0], a[2], a[3]})));
  EXPECT_TRUE(at::equal(saved.expert_inputs(stack, 1, 10), at::stack({a[1], b[0], b[3]})));
  EXPECT_TRUE(at::equal(recorder.calibration().expert_inputs(stack, 2, 10), b[1].unsqueeze(0)));
  EXPECT_THROW(recorder.record("blocks.0.moe", at::randn({2, 5}), at::zeros({2}, at::kLong)),
               strata::Error);
  EXPECT_THROW(recorder.record("blocks.0.moe", a, at::zeros({4}, at::kLong)), strata::Error);
}

}  // namespace
}  // namespace strata::moe
