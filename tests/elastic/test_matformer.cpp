// MatFormer: nested widths equal dense models cut from the same weights, joint training,
// Mix'n'Match, and extraction to an ordinary fortunes-lm checkpoint.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <mutex>

#include "core/test_util.h"
#include "parallel/comm_test_support.h"
#include "strata/core/checkpoint.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/parameters.h"
#include "strata/elastic/extract.h"
#include "strata/elastic/mat_ffn.h"
#include "strata/elastic/matformer.h"
#include "strata/elastic/mix_n_match.h"
#include "strata/parallel/data/hybrid_parallel.h"

namespace core = strata::core;
namespace elastic = strata::elastic;
namespace parallel = strata::parallel;
using core::TransformerLMOptions;
using elastic::Granularity;
using elastic::Submodel;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;

namespace {

// vocab 32, 3 layers, FFN 32 (granularities 32/16/8/4), 4 heads nested as 4/2/2/1.
TransformerLMOptions tiny() {
  return TransformerLMOptions().vocab(32).d_model(16).heads(4).ffn(32).layers(3).context(8);
}
elastic::MatFormerOptions nested_heads() {
  return elastic::MatFormerOptions().head_granularities({4, 2, 2, 1});
}

at::Generator gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

at::Tensor tokens(int64_t batch, uint64_t seed) {
  return at::randint(0, 32, {batch, 8}, gen(seed), at::kLong);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// A submodel that mixes widths and heads and skips the middle layer.
Submodel mixed() { return {{8, 32, 16}, {2, 4, 2}, {1}}; }

// The universal checkpoint, as train_lm --matformer writes it.
std::string save_universal(const TempDir& dir, torch::nn::Sequential& lm,
                           const std::vector<Granularity>& granularities) {
  nlohmann::json extra = core::transformer_lm_to_json(tiny());
  extra["matformer"] = elastic::matformer_to_json(granularities);
  const std::string path = dir / "universal";
  core::save_checkpoint(path, *lm, nullptr, 7, extra);
  return path;
}

}  // namespace

TEST(MatFfn, EveryWidthEqualsTheDenseFfnOfItsFirstNeurons) {
  torch::manual_seed(1);
  elastic::MatFfn ffn(elastic::MatFfnOptions(12, 40).granularities({40, 20, 10, 5}));
  EXPECT_EQ(ffn->granularities(), (std::vector<int64_t>{40, 20, 10, 5}));
  const at::Tensor x = at::randn({3, 7, 12});
  for (const int64_t m : {40, 20, 10, 5}) {
    torch::nn::Linear in(12, m), out(m, 12);
    {
      torch::NoGradGuard no_grad;
      in->weight.copy_(ffn->ffn_in->weight.narrow(0, 0, m));
      in->bias.copy_(ffn->ffn_in->bias.narrow(0, 0, m));
      out->weight.copy_(ffn->ffn_out->weight.narrow(1, 0, m));
      out->bias.copy_(ffn->ffn_out->bias);
    }
    const at::Tensor dense = out(at::gelu(in(x)));
    EXPECT_LT(max_abs_diff(ffn->forward(x, m), dense), 1e-6) << "width " << m;
    ffn->set_width(m);
    EXPECT_LT(max_abs_diff(ffn(x), dense), 1e-6) << "width " << m;
  }
  EXPECT_EQ(elastic::default_granularities(1024), (std::vector<int64_t>{1024, 512, 256, 128}));
  EXPECT_THAT(error_of([&] { ffn->set_width(30); }),
              HasSubstr("width 30 is not one of its granularities (40, 20, 10, 5)"));
}

TEST(MatFfn, GradientsReachOnlyTheNeuronsInUse) {
  elastic::MatFfn ffn(elastic::MatFfnOptions(6, 16));
  ffn->forward(at::randn({4, 6}), 4).sum().backward();
  EXPECT_GT(ffn->ffn_in->weight.grad().narrow(0, 0, 4).abs().sum().item<double>(), 0);
  EXPECT_EQ(ffn->ffn_in->weight.grad().narrow(0, 4, 12).abs().sum().item<double>(), 0);
  EXPECT_EQ(ffn->ffn_out->weight.grad().narrow(1, 4, 12).abs().sum().item<double>(), 0);
}

TEST(MatFormer, GranularitiesAreCheckedAndPaired) {
  const auto g = elastic::matformer_granularities(tiny(), nested_heads());
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0], (Granularity{32, 4}));
  EXPECT_EQ(g[3], (Granularity{4, 1}));
  EXPECT_THAT(error_of([] {
                elastic::matformer_granularities(
                    tiny(), elastic::MatFormerOptions().granularities({32, 64}));
              }),
              HasSubstr("granularity 64, expected 1 to 32"));
  EXPECT_THAT(error_of([] {
                elastic::matformer_granularities(
                    tiny(), elastic::MatFormerOptions().granularities({16, 8}));
              }),
              HasSubstr("expected the whole model"));
  EXPECT_THAT(error_of([] {
                elastic::matformer_granularities(
                    tiny(), elastic::MatFormerOptions().head_granularities({4, 2}));
              }),
              HasSubstr("2 head granularities for 4 FFN granularities"));
}

TEST(MatFormer, ParameterCountsAndShapesMatchTheBuiltModel) {
  const TransformerLMOptions sub = elastic::submodel_options(tiny(), mixed());
  EXPECT_EQ(sub.layers(), 2);
  EXPECT_EQ(sub.layer_ffn(), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(sub.layer_heads(), (std::vector<int64_t>{2, 2}));
  // One width everywhere is a plain fortunes-lm; fewer heads stay per layer (head width).
  const TransformerLMOptions uniform =
      elastic::submodel_options(tiny(), {{8, 8, 8}, {4, 4, 4}, {}});
  EXPECT_EQ(uniform.ffn(), 8);
  EXPECT_TRUE(uniform.layer_ffn().empty() && uniform.layer_heads().empty());
  for (const TransformerLMOptions& options : {tiny(), sub}) {
    torch::nn::Sequential lm = core::make_transformer_lm(options);
    int64_t n = 0;
    for (const at::Tensor& p : core::unique_parameters(*lm)) n += p.numel();
    EXPECT_EQ(elastic::count_parameters(options), n);
    const auto shapes = core::transformer_lm_shapes(options);
    const auto params = lm->named_parameters();
    EXPECT_EQ(shapes.size(), params.size());
    for (const auto& p : params) EXPECT_EQ(shapes.at(p.key()), p.value().sizes().vec()) << p.key();
  }
  // FLOPs fall with the widths.
  EXPECT_LT(elastic::forward_flops(sub, 8), elastic::forward_flops(tiny(), 8));
}

TEST(MatFormer, ExtractedSubmodelReloadsAndEqualsTheUniversalModel) {
  TempDir dir;
  torch::manual_seed(3);
  torch::nn::Sequential lm = core::make_transformer_lm(tiny());
  const auto granularities = elastic::matformer_granularities(tiny(), nested_heads());
  const std::string universal = save_universal(dir, lm, granularities);
  const at::Tensor x = tokens(4, 5);

  for (const Submodel& s : {Submodel::uniform(tiny(), granularities[2]), mixed(),
                            Submodel::uniform(tiny(), granularities[0])}) {
    SCOPED_TRACE(s.describe());
    const std::string out = dir / "sub";
    const elastic::ExtractReport report = elastic::extract_submodel(universal, s, out);
    core::LoadedTransformerLM loaded = core::load_transformer_lm(out);
    EXPECT_EQ(loaded.step, 7);
    EXPECT_EQ(report.parameters, elastic::count_parameters(loaded.options));
    EXPECT_EQ(loaded.options.layers(), tiny().layers() - static_cast<int64_t>(s.skip.size()));

    elastic::apply_submodel(*lm, s);
    torch::NoGradGuard no_grad;
    EXPECT_LT(max_abs_diff(loaded.model->forward(x), lm->forward(x)), 1e-6);
    elastic::reset_submodel(*lm);
  }
}

TEST(MatFormer, SkippedLayersAreRenumbered) {
  TempDir dir;
  torch::manual_seed(4);
  torch::nn::Sequential lm = core::make_transformer_lm(tiny());
  const auto granularities = elastic::matformer_granularities(tiny(), nested_heads());
  elastic::extract_submodel(save_universal(dir, lm, granularities), mixed(), dir / "sub");
  core::CheckpointReader reader(dir / "sub");
  // Universal layer 2 (FFN 16) is the submodel's layer 1; there is no layer 2.
  ASSERT_NE(reader.find("block1.ffn_in.weight"), nullptr);
  EXPECT_EQ(reader.find("block1.ffn_in.weight")->shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(reader.find("block2.ffn_in.weight"), nullptr);
  const at::Tensor expected = lm->named_parameters()["block2.ffn_in.weight"].narrow(0, 0, 16);
  EXPECT_TRUE(at::equal(reader.read("block1.ffn_in.weight"), expected));
}

TEST(MatFormer, ExtractionRejectsBadInputAndWritesNothing) {
  TempDir dir;
  torch::nn::Sequential lm = core::make_transformer_lm(tiny());
  const auto granularities = elastic::matformer_granularities(tiny(), {});
  const std::string universal = save_universal(dir, lm, granularities);
  const std::string out = dir / "out";

  EXPECT_THAT(
      error_of([&] {
        elastic::extract_submodel(universal, Submodel::uniform(tiny(), {12, 4}), out);
      }),
      HasSubstr("FFN width 12 of layer 0 is not a granularity of the model (32, 16, 8, 4)"));
  EXPECT_THAT(error_of([&] {
                elastic::extract_submodel(universal, Submodel::uniform(tiny(), {8, 2}), out);
              }),
              HasSubstr("2 heads in layer 0 is not a head granularity"));
  EXPECT_THAT(
      error_of([&] {
        elastic::extract_submodel(universal, Submodel{{8, 8, 8}, {4, 4, 4}, {0, 1, 2}}, out);
      }),
      HasSubstr("skips all 3 layers"));
  EXPECT_THAT(error_of([&] {
                elastic::extract_submodel(universal, Submodel::uniform(tiny(), granularities[1]),
                                          dir / "missing/out");
              }),
              HasSubstr("output directory " + (dir / "missing") + " does not exist"));

  // A plain (not MatFormer) fortunes-lm checkpoint.
  core::save_checkpoint(dir / "plain", *lm, nullptr, 1, core::transformer_lm_to_json(tiny()));
  EXPECT_THAT(error_of([&] {
                elastic::extract_submodel(dir / "plain", Submodel::uniform(tiny(), {8, 4}), out);
              }),
              HasSubstr("is not a MatFormer checkpoint"));

  // A checkpoint whose tensors do not match its model.
  nlohmann::json extra = core::transformer_lm_to_json(tiny().ffn(16));
  extra["matformer"] =
      elastic::matformer_to_json(elastic::matformer_granularities(tiny().ffn(16), {}));
  core::save_checkpoint(dir / "lying", *lm, nullptr, 1, extra);
  EXPECT_THAT(error_of([&] {
                elastic::extract_submodel(dir / "lying", Submodel::uniform(tiny(), {8, 4}), out);
              }),
              HasSubstr("tensor 'block0.ffn_in.weight' has shape [32, 16], expected [16, 16]"));

  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path();
}

TEST(MixNMatch, HeuristicAndSearchRespectTheBudget) {
  const auto granularities = elastic::matformer_granularities(tiny(), nested_heads());
  // 4 granularities, 3 layers: 64 assignments; the slowly changing ones are fewer.
  const auto all = elastic::mix_n_match_candidates(tiny(), granularities);
  const auto slow = elastic::slowly_changing_submodels(tiny(), granularities);
  EXPECT_EQ(all.size(), 64u);
  EXPECT_LT(slow.size(), all.size());
  for (const auto& s : slow) {
    // Never shrinking towards the last layer, by at most one granularity per layer.
    for (size_t i = 1; i < s.submodel.ffn.size(); ++i) {
      EXPECT_GE(s.submodel.ffn[i], s.submodel.ffn[i - 1]) << s.submodel.describe();
      EXPECT_LE(s.submodel.ffn[i], 2 * s.submodel.ffn[i - 1]) << s.submodel.describe();
    }
  }
  const int64_t full = elastic::count_parameters(tiny());
  const int64_t smallest = slow.back().parameters;
  const elastic::SubmodelBudget budget{elastic::SubmodelCost::Parameters,
                                       static_cast<double>(smallest + full) / 2};
  const auto pick = elastic::mix_n_match_heuristic(tiny(), granularities, budget);
  EXPECT_LE(pick.parameters, budget.limit);
  for (const auto& s : slow) {
    if (s.parameters <= budget.limit) {
      EXPECT_LE(s.parameters, pick.parameters);
    }
  }

  // The search returns the candidates it scored, best first, all within the budget.
  int scored = 0;
  const auto searched = elastic::mix_n_match_search(
      tiny(), granularities, budget,
      [&](const Submodel& s) {
        ++scored;
        return static_cast<double>(s.ffn[0]);
      },
      5);
  EXPECT_EQ(scored, 5);
  ASSERT_EQ(searched.size(), 5u);
  for (size_t i = 0; i < searched.size(); ++i) {
    EXPECT_LE(searched[i].parameters, budget.limit);
    if (i > 0) {
      EXPECT_LE(searched[i - 1].loss, searched[i].loss);
    }
  }

  EXPECT_THAT(error_of([&] {
                elastic::mix_n_match_heuristic(tiny(), granularities,
                                               {elastic::SubmodelCost::Parameters, 100});
              }),
              HasSubstr("budget of 100 parameters is below the smallest submodel"));
}

TEST(MixNMatch, ParetoFrontKeepsOnlyUnbeatenSubmodels) {
  auto make = [](int64_t params, double loss) {
    elastic::ScoredSubmodel s;
    s.parameters = params;
    s.loss = loss;
    return s;
  };
  const auto front =
      elastic::pareto_front({make(30, 1.0), make(10, 2.0), make(20, 2.5), make(40, 1.5)});
  ASSERT_EQ(front.size(), 2u);
  EXPECT_EQ(front[0].parameters, 10);
  EXPECT_EQ(front[1].parameters, 30);
}

// ---------------------------------------------------------------- joint training

namespace {

// The same model on every in-process rank: the ranks are threads sharing torch's global
// generator, so seeding and drawing must not interleave.
torch::nn::Sequential seeded_model() {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  torch::manual_seed(11);
  return core::make_transformer_lm(tiny());
}

// The sum over `passes` of each submodel's loss gradient, computed one at a time.
std::map<std::string, at::Tensor> summed_gradients(const std::vector<Submodel>& passes,
                                                   const at::Tensor& x, const at::Tensor& y) {
  torch::nn::Sequential lm = seeded_model();
  for (const Submodel& s : passes) {
    elastic::apply_submodel(*lm, s);
    core::lm_loss(lm->forward(x), y).backward();
  }
  std::map<std::string, at::Tensor> grads;
  for (const auto& p : lm->named_parameters()) grads[p.key()] = p.value().grad().clone();
  return grads;
}

std::vector<Submodel> every_granularity() {
  std::vector<Submodel> out;
  for (const Granularity& g : elastic::matformer_granularities(tiny(), nested_heads()))
    out.push_back(Submodel::uniform(tiny(), g));
  return out;
}

// One joint step with HybridParallel on `comm` (pp stages, the rest data parallel); every
// rank's parameters' gradients must be the single-process sum.
void check_joint_step(parallel::Communicator& comm, int pp) {
  const std::vector<Submodel> passes = every_granularity();
  const at::Tensor x = tokens(8, 21), y = tokens(8, 22);
  const auto expected = summed_gradients(passes, x, y);

  torch::nn::Sequential lm = seeded_model();
  const int dp = comm.size() / pp;
  parallel::HybridParallel model(
      lm, comm.shared_from_this(), core::lm_loss, x.chunk(dp)[0],
      parallel::HybridParallelOptions().pipeline_parallel(pp).pipeline(
          parallel::PipelineParallelOptions().micro_batches(2).balance("params")));
  torch::optim::SGD sgd(model.parameters(), 0.0);  // lr 0: .grad is what we look at
  const int r = model.data_parallel_rank();
  const std::vector<double> losses = model.train_step(
      x.chunk(dp)[r], y.chunk(dp)[r], sgd, static_cast<int>(passes.size()),
      [&](int i) { elastic::apply_submodel(*lm, passes[static_cast<size_t>(i)]); });
  EXPECT_EQ(losses.size(), passes.size());
  const auto names = lm->named_parameters();
  for (const at::Tensor& p : model.parameters()) {
    std::string name;
    for (const auto& item : names)
      if (item.value().is_same(p)) name = item.key();
    ASSERT_FALSE(name.empty());
    const at::Tensor& want = expected.at(name);
    EXPECT_LT((p.grad() - want).norm().item<double>(), 1e-5 * (1 + want.norm().item<double>()))
        << name << " on rank " << comm.rank();
  }
}

}  // namespace

TEST(MatFormerTraining, JointGradientIsTheSumOfEachGranularitysGradient) {
  // One process, the passes run by HybridParallel on a world of one.
  parallel::testing::run_in_process(
      1, [](parallel::Communicator& comm) { check_joint_step(comm, 1); });
}

TEST(MatFormerTraining, DataParallelJointStepMatchesOneProcess) {
  parallel::testing::run_in_process(
      2, [](parallel::Communicator& comm) { check_joint_step(comm, 1); });
}

TEST(MatFormerTraining, PipelinedJointStepMatchesOneProcess) {
  // pp 2 (the tied embedding and head on different stages), then pp 2 x dp 2.
  parallel::testing::run_in_process(
      2, [](parallel::Communicator& comm) { check_joint_step(comm, 2); });
  parallel::testing::run_in_process(
      4, [](parallel::Communicator& comm) { check_joint_step(comm, 2); });
}

TEST(MatFormerTraining, EveryGranularitysLossDecreases) {
  torch::manual_seed(5);
  torch::nn::Sequential lm = core::make_transformer_lm(tiny());
  const std::vector<Submodel> passes = every_granularity();
  torch::optim::AdamW adamw(core::unique_parameters(*lm), torch::optim::AdamWOptions(3e-3));
  // A learnable sequence: each token is the previous one plus 1 (mod 32).
  const at::Tensor start = at::randint(0, 32, {16, 1}, gen(9), at::kLong);
  const at::Tensor seq = (start + at::arange(9, at::kLong)).remainder(32);
  const at::Tensor x = seq.narrow(1, 0, 8), y = seq.narrow(1, 1, 8);
  auto losses = [&] {
    std::vector<double> out;
    torch::NoGradGuard no_grad;
    for (const Submodel& s : passes) {
      elastic::apply_submodel(*lm, s);
      out.push_back(core::lm_loss(lm->forward(x), y).item<double>());
    }
    return out;
  };
  const std::vector<double> before = losses();
  for (int step = 0; step < 40; ++step) {
    adamw.zero_grad();
    for (const Submodel& s : passes) {
      elastic::apply_submodel(*lm, s);
      core::lm_loss(lm->forward(x), y).backward();
    }
    adamw.step();
  }
  const std::vector<double> after = losses();
  for (size_t i = 0; i < passes.size(); ++i)
    EXPECT_LT(after[i], 0.7 * before[i]) << passes[i].describe();
}
