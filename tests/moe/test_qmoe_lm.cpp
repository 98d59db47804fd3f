// QMoE on a whole fortunes-lm-moe: the model loaded with its compressed experts gives the
// logits of the dense model whose experts hold the decoded ternary weights; it is
// inference only; a compressed file of another model is one clear error; calibration
// records every routed token of every layer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/test_util.h"
#include "strata/core/checkpoint.h"
#include "strata/moe/qmoe_lm.h"

namespace strata::moe {
namespace {

using strata::test::error_of;
using strata::test::TempDir;
using strata::test::write_file;

core::TransformerLMOptions tiny_lm() {
  return core::TransformerLMOptions().d_model(32).heads(2).ffn(64).layers(2).context(16);
}

MoELayerOptions tiny_moe(int64_t experts) {
  return MoELayerOptions(tiny_lm().d_model(), experts, /*hidden=*/48).top_k(2);
}

// A fortunes-lm-moe checkpoint as train_lm --moe writes it (weights and description).
void write_tiny_checkpoint(const std::string& path, int64_t experts, uint64_t seed,
                           MoELayerOptions moe = tiny_moe(4)) {
  torch::manual_seed(seed);
  moe.experts(experts);
  torch::nn::Sequential model = make_moe_transformer_lm(tiny_lm(), moe);
  nlohmann::json description = core::transformer_lm_to_json(tiny_lm());
  description.update(moe_lm_description(moe));
  description["moe_routing"] = moe_routing_description(moe);
  core::save_checkpoint(path, *model, nullptr, 7, description);
}

TEST(QmoeLM, LoadRebuildsTheModelAndItsRouting) {
  TempDir dir;
  write_tiny_checkpoint(dir / "ckpt", 4, 1,
                        tiny_moe(4).capacity_factor(1.25).drop_priority(DropPriority::Score));
  LoadedMoETransformerLM lm = load_moe_transformer_lm(dir / "ckpt");
  EXPECT_EQ(lm.options.d_model(), 32);
  EXPECT_EQ(lm.options.layers(), 2);
  const MoELayerOptions& o = moe_layers(*lm.model).at(1)->options;
  EXPECT_EQ(o.experts(), 4);
  EXPECT_EQ(o.hidden(), 48);
  EXPECT_EQ(o.top_k(), 2);
  EXPECT_EQ(o.capacity_factor(), 1.25);
  EXPECT_EQ(o.drop_priority(), DropPriority::Score);

  torch::nn::Sequential dense = core::make_transformer_lm(tiny_lm());
  nlohmann::json description = core::transformer_lm_to_json(tiny_lm());
  core::save_checkpoint(dir / "dense", *dense, nullptr, 0, description);
  EXPECT_EQ(
      error_of([&] { load_moe_transformer_lm(dir / "dense"); }),
      "checkpoint " + dir / "dense" +
          ": not a fortunes-lm-moe checkpoint (its extra has no \"model\": \"fortunes-lm-moe\")");
}

// Every expert stack of the checkpoint, compressed (Gaussian calibration: enough here).
QmoeModel compress_checkpoint(const std::string& path) {
  QmoeModel model;
  GaussianCalibration calibration(0);
  for (const ExpertStack& stack : find_expert_stacks(read_checkpoint_tensors(path)))
    model.layers.push_back(
        compress_expert_stack(stack, calibration, QmoeCompressOptions().calibration_tokens(64)));
  return model;
}

TEST(QmoeLM, CompressedExpertsGiveTheLogitsOfTheDecodedWeights) {
  TempDir dir;
  write_tiny_checkpoint(dir / "ckpt", 4, 1);
  const QmoeModel q = compress_checkpoint(dir / "ckpt");
  write_qmoe(dir / "m.qmoe", q);

  LoadedMoETransformerLM compressed = load_compressed_moe_lm(dir / "ckpt", dir / "m.qmoe");
  EXPECT_EQ(compressed.step, 7);
  EXPECT_FALSE(compressed.model->is_training());
  LoadedMoETransformerLM decoded = load_moe_transformer_lm(dir / "ckpt");
  LoadedMoETransformerLM original = load_moe_transformer_lm(dir / "ckpt");
  decoded.model->eval();
  original.model->eval();
  torch::NoGradGuard no_grad;
  const auto layers = named_moe_layers(*decoded.model);
  ASSERT_EQ(layers.size(), q.layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    ASSERT_EQ(layers[i].first, q.layers[i].name);
    MoELayerImpl& layer = *layers[i].second;
    for (int64_t e = 0; e < 4; ++e) {
      layer.w_in[e].copy_(ternary_decode(q.layers[i].w_in[e]));
      layer.w_out[e].copy_(ternary_decode(q.layers[i].w_out[e]));
    }
  }
  for (MoELayerImpl* layer : moe_layers(*compressed.model)) {
    ASSERT_TRUE(layer->compressed_experts());
    EXPECT_EQ(layer->w_in.numel(), 0);  // the dense stacks are released
  }

  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const at::Tensor tokens = at::randint(0, 256, {3, 16}, gen);
  const at::Tensor expected = decoded.model->forward(tokens);
  const at::Tensor got = compressed.model->forward(tokens);
  // The kernels add the same products in another order: float rounding only. The
  // original weights give logits farther away than that, so the experts do run.
  const double scale = expected.abs().max().item<double>();
  EXPECT_LE((got - expected).abs().max().item<double>(), 1e-5 * scale);
  EXPECT_GT((original.model->forward(tokens) - expected).abs().max().item<double>(), 1e-3 * scale);
}

TEST(QmoeLM, CompressedExpertsAreInferenceOnly) {
  TempDir dir;
  write_tiny_checkpoint(dir / "ckpt", 4, 1);
  write_qmoe(dir / "m.qmoe", compress_checkpoint(dir / "ckpt"));
  LoadedMoETransformerLM lm = load_compressed_moe_lm(dir / "ckpt", dir / "m.qmoe");
  const at::Tensor tokens = at::zeros({1, 4}, at::kLong);
  EXPECT_NE(error_of([&] { lm.model->forward(tokens); }).find("inference only"), std::string::npos);
  lm.model->train();
  torch::NoGradGuard no_grad;
  EXPECT_NE(error_of([&] { lm.model->forward(tokens); }).find("inference only"), std::string::npos);
}

TEST(QmoeLM, CompressedFileOfAnotherModelIsOneClearError) {
  TempDir dir;
  write_tiny_checkpoint(dir / "ckpt", 4, 1);
  write_tiny_checkpoint(dir / "other", 2, 1);
  write_qmoe(dir / "other.qmoe", compress_checkpoint(dir / "other"));
  EXPECT_EQ(error_of([&] { load_compressed_moe_lm(dir / "ckpt", dir / "other.qmoe"); }),
            dir / "other.qmoe" +
                ": layer 'block0.moe' has 2 experts of d 32, hidden 48; the model's has 4 of d "
                "32, hidden 48");

  QmoeModel one_layer = compress_checkpoint(dir / "ckpt");
  one_layer.layers.pop_back();
  write_qmoe(dir / "one.qmoe", one_layer);
  EXPECT_EQ(error_of([&] { load_compressed_moe_lm(dir / "ckpt", dir / "one.qmoe"); }),
            dir / "one.qmoe" +
                ": 1 compressed layers, the model has 2 MoE layers (block0.moe, block1.moe)");

  QmoeModel renamed = compress_checkpoint(dir / "ckpt");
  renamed.layers[1].name = "block9.moe";
  write_qmoe(dir / "renamed.qmoe", renamed);
  EXPECT_EQ(error_of([&] { load_compressed_moe_lm(dir / "ckpt", dir / "renamed.qmoe"); }),
            dir / "renamed.qmoe" +
                ": no compressed layer 'block1.moe' (the model's MoE layers: block0.moe, "
                "block1.moe)");
}

TEST(QmoeLM, CalibrationRecordsEveryRoutedToken) {
  TempDir dir;
  std::filesystem::create_directories(dir / "text");
  std::string text;
  for (int i = 0; i < 400; ++i) text += "fortune " + std::to_string(i * 7919 % 1000) + "\n";
  write_file(dir / "text/a", text);
  write_file(dir / "text/b", text.substr(0, 200));
  const core::TextCorpus corpus = core::TextCorpus::load(dir / "text");
  write_tiny_checkpoint(dir / "ckpt", 4, 1);
  LoadedMoETransformerLM lm = load_moe_transformer_lm(dir / "ckpt");

  RoutedTokenRecorder recorder(1 << 20);
  record_routed_tokens(lm.model, corpus, 20, 16, 0, recorder);
  EXPECT_TRUE(lm.model->is_training());  // the mode comes back
  for (const char* layer : {"block0.moe", "block1.moe"}) {
    int64_t rows = 0;
    for (int64_t e = 0; e < 4; ++e) rows += recorder.tokens(layer, e);
    EXPECT_EQ(rows, 20 * 16 * 2) << layer;  // dropless top-2: two rows per token
  }
  // The observers are gone: another forward records nothing.
  lm.model->forward(at::zeros({1, 16}, at::kLong));
  EXPECT_EQ(recorder.tensors().at("block0.moe.experts").numel(), 20 * 16 * 2);
}

}  // namespace
}  // namespace strata::moe
