// N:M sparse training: the one-pass pruner, NMSparseLinear's forward and its SR-STE and
// BDWP backward passes against their formulas, training, and the model conversion.
#include "strata/core/cpu_capability.h"
#include "strata/sparse/nm_sparse_linear.h"
#include "strata/sparse/pruning.h"

#include "core/scoped_env.h"
#include "sparse_test_util.h"

namespace strata::sparse {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::random_weight;

TEST(SparseNMTraining, PruneEqualsMaskThenPack) {
  for (auto [n, m, in] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {2, 4, 16}, {2, 8, 37}, {1, 4, 5}, {3, 32, 70}, {4, 8, 3}, {2, 8, 200}, {5, 8, 301}}) {
    const at::Tensor w = random_weight(9, in, uint64_t(in));
    const NMSparse fast = NMSparse::prune(w, n, m);
    const NMSparse ref = NMSparse::from_dense(w, nm_magnitude_mask(w, n, m), n, m);
    const std::string what =
        std::to_string(n) + ":" + std::to_string(m) + " in " + std::to_string(in);
    EXPECT_TRUE(at::equal(fast.to_dense(), ref.to_dense())) << what;
    EXPECT_TRUE(at::equal(fast.mask(), nm_magnitude_mask(w, n, m))) << what;
    EXPECT_EQ(fast.groups, ref.groups) << what;
    // The transposed view (the AVX-512 column path for 2:8 and 5:8) equals pruning a copy.
    const NMSparse view = NMSparse::prune(w.t(), n, m);
    const NMSparse copy = NMSparse::prune(w.t().contiguous(), n, m);
    EXPECT_TRUE(at::equal(view.to_dense(), copy.to_dense())) << what << " transposed";
    EXPECT_TRUE(at::equal(view.index, copy.index)) << what << " transposed";
  }
}

TEST(SparseNMTraining, PruneVectorPathEqualsPortablePath) {
  // 33 rows (two blocks of 16 and one left over) x 203 columns (25 full groups and a
  // padded one), with ties: the AVX-512 passes against STRATA_CPU_CAPABILITY=portable.
  at::Tensor w = random_weight(33, 203, 11);
  w.slice(1, 0, 16).fill_(0.5);  // ties inside the first groups
  for (const at::Tensor& t : {w, w.t().contiguous(), at::Tensor(w.t())}) {
    const NMSparse vector = NMSparse::prune(t, 2, 8);
    test::ScopedEnv env(core::kCpuCapabilityEnv, "portable");
    const NMSparse portable = NMSparse::prune(t, 2, 8);
    EXPECT_TRUE(at::equal(vector.index, portable.index));
    EXPECT_TRUE(at::equal(vector.values, portable.values));
  }
}

TEST(SparseNMTraining, ForwardIsTheLinearOfTheSparseWeight) {
  torch::manual_seed(0);
  NMSparseLinear layer(NMSparseLinearOptions(40, 24).n(2).m(8));
  const at::Tensor x = torch::randn({5, 3, 40});
  const at::Tensor sparse = layer->sparse_weight();
  // Exactly 2 of every 8 weights kept.
  EXPECT_TRUE((layer->mask().view({24, 5, 8}).sum(2) == 2).all().item<bool>());
  EXPECT_TRUE(at::equal(sparse, layer->weight.detach() * layer->mask()));
  const at::Tensor y = layer(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{5, 3, 24}));
  expect_close(y.detach().view({15, 24}),
               testing::reference(x.view({15, 40}), sparse) + layer->bias.detach().to(at::kDouble),
               1e-5, "forward");
}

// dy, x and the layer's gradients after y = layer(x); (y * dy).sum().backward().
struct Gradients {
  at::Tensor x, dy, dx, dw, db;
};

Gradients run_backward(NMSparseLinear& layer, uint64_t seed, int64_t tokens = 6) {
  torch::manual_seed(seed);
  Gradients g;
  g.x = torch::randn({tokens, layer->options.in_features()}).requires_grad_();
  g.dy = torch::randn({tokens, layer->options.out_features()});
  layer->zero_grad();
  (layer(g.x) * g.dy).sum().backward();
  g.dx = g.x.grad();
  g.dw = layer->weight.grad();
  g.db = layer->bias.grad();
  return g;
}

TEST(SparseNMTraining, SrSteBackwardFollowsItsFormula) {
  torch::manual_seed(1);
  NMSparseLinear layer(
      NMSparseLinearOptions(32, 16).n(2).m(8).method(NMTraining::SrSte).decay(0.01));
  const at::Tensor w = layer->weight.detach().clone();
  const at::Tensor p = layer->mask();
  const Gradients g = run_backward(layer, 2);
  // dx: the exact gradient of the sparse forward.
  const at::Tensor ws = (w * p).requires_grad_();
  const at::Tensor xr = g.x.detach().requires_grad_();
  (at::mm(xr, ws.t()) * g.dy).sum().backward();
  expect_close(g.dx, xr.grad(), 1e-5, "SR-STE dx");
  // dW: the gradient reaches every weight (straight through), plus the decay of pruned ones.
  expect_close(g.dw, at::mm(g.dy.t(), g.x.detach()) + 0.01 * w * p.logical_not(), 1e-5,
               "SR-STE dW");
  expect_close(g.db, g.dy.sum(0), 1e-6, "SR-STE db");
}

TEST(SparseNMTraining, BdwpBackwardPrunesTheTransposedWeight) {
  torch::manual_seed(3);
  NMSparseLinear layer(NMSparseLinearOptions(24, 16).n(2).m(8).decay(0));
  const at::Tensor w = layer->weight.detach().clone();
  const Gradients g = run_backward(layer, 4);
  const at::Tensor q = nm_magnitude_mask(w.t(), 2, 8).t();  // N:M along the output channels
  expect_close(g.dx, testing::reference(g.dy, (w * q).t()), 1e-5, "BDWP dx");
  expect_close(g.dw, at::mm(g.dy.t(), g.x.detach()), 1e-5, "BDWP dW");
}

TEST(SparseNMTraining, BdwpIsTheExactGradientWhenBothMasksAgree) {
  // An 8x8 weight (one group per row and per column) whose 2:8 pattern is the same along
  // rows and columns: large values on the diagonal and the one beside it.
  torch::manual_seed(5);
  NMSparseLinear layer(NMSparseLinearOptions(8, 8).n(2).m(8).decay(0));
  {
    torch::NoGradGuard no_grad;
    at::Tensor w = at::rand({8, 8}) * 0.1;
    for (int64_t i = 0; i < 8; ++i) {
      w[i][i] = 1.0 + 0.01 * double(i);
      w[i][(i + 1) % 8] = -2.0;
    }
    layer->weight.copy_(w);
  }
  const at::Tensor w = layer->weight.detach().clone();
  ASSERT_TRUE(at::equal(nm_magnitude_mask(w, 2, 8), nm_magnitude_mask(w.t(), 2, 8).t()));
  const Gradients g = run_backward(layer, 6);
  const at::Tensor ws = (w * layer->mask()).requires_grad_();
  const at::Tensor xr = g.x.detach().requires_grad_();
  (at::mm(xr, ws.t()) * g.dy).sum().backward();
  expect_close(g.dx, xr.grad(), 1e-5, "BDWP dx where the masks agree");
}

TEST(SparseNMTraining, PortablePathGivesTheSameGradients) {
  for (NMTraining method : {NMTraining::SrSte, NMTraining::Bdwp}) {
    torch::manual_seed(7);
    NMSparseLinear fast(NMSparseLinearOptions(48, 20).method(method));
    NMSparseLinear portable(
        NMSparseLinearOptions(48, 20).method(method).spmm(SpmmOptions().portable(true)));
    {
      torch::NoGradGuard no_grad;
      portable->weight.copy_(fast->weight);
      portable->bias.copy_(fast->bias);
    }
    const Gradients a = run_backward(fast, 8, 37), b = run_backward(portable, 8, 37);
    expect_close(a.dx, b.dx, 1e-5, "dx");
    expect_close(a.dw, b.dw, 1e-5, "dW");
  }
}

TEST(SparseNMTraining, TrainsAndConvertsToInference) {
  for (NMTraining method : {NMTraining::SrSte, NMTraining::Bdwp}) {
    torch::manual_seed(9);
    // Teacher: a random 2-layer network; the student learns it with 2:8 hidden layers.
    const at::Tensor x = torch::randn({256, 32});
    const at::Tensor target = at::tanh(x.matmul(torch::randn({32, 8})));
    torch::nn::Sequential student(torch::nn::Linear(32, 64), torch::nn::Tanh(),
                                  torch::nn::Linear(64, 8));
    int replaced = 0;
    student = with_nm_sparse_training(student, NMSparseLinearOptions(1, 1).method(method), true,
                                      &replaced);
    ASSERT_EQ(replaced, 1);
    torch::optim::Adam opt(student->parameters(), 1e-2);
    double first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
      opt.zero_grad();
      const at::Tensor loss = torch::mse_loss(student->forward(x), target);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_LT(last, 0.3 * first) << to_string(method);
    auto layer = std::dynamic_pointer_cast<NMSparseLinearImpl>(student->ptr(0));
    ASSERT_TRUE(layer);
    torch::NoGradGuard no_grad;
    expect_close(layer->to_sparse_linear()(x), layer->forward(x), 1e-5, "inference copy");
  }
}

// dense_grad_every(0): dW only at the kept positions, on the vector and portable paths, for
// 6 tokens and 300 (more than one 256-token chunk of the sddmm kernel), with a padded group.
TEST(SparseNMTraining, MaskedWeightGradientEqualsTheDenseGradientMasked) {
  for (NMTraining method : {NMTraining::SrSte, NMTraining::Bdwp})
    for (double decay : {0.0, 0.01})
      for (bool portable : {false, true})
        for (int64_t tokens : {6, 300}) {
          torch::manual_seed(11);
          NMSparseLinear layer(
              NMSparseLinearOptions(37, 20).method(method).decay(decay).dense_grad_every(0).spmm(
                  SpmmOptions().portable(portable)));
          const at::Tensor w = layer->weight.detach().clone();
          const at::Tensor p = layer->mask();
          const Gradients g = run_backward(layer, 12, tokens);
          const std::string what = to_string(method) + " decay " + std::to_string(decay) +
                                   (portable ? " portable " : " vector ") + std::to_string(tokens) +
                                   " tokens";
          const at::Tensor dense = at::mm(g.dy.t(), g.x.detach());
          expect_close(g.dw, dense * p + decay * w * p.logical_not(), 1e-5, "masked dW " + what);
          expect_close(g.db, g.dy.sum(0), 1e-6, "db " + what);
        }
}

// mask_every(1) (the default) re-prunes at every step, exactly the formulas of SR-STE.
TEST(SparseNMTraining, MaskEveryOneRepacksEveryStep) {
  torch::manual_seed(13);
  NMSparseLinear layer(NMSparseLinearOptions(32, 16).method(NMTraining::SrSte).decay(0.01));
  torch::optim::SGD opt(layer->parameters(), torch::optim::SGDOptions(0.5));
  int changed = 0;
  at::Tensor last_mask;
  for (int step = 0; step < 6; ++step) {
    const at::Tensor w = layer->weight.detach().clone();
    const at::Tensor p = nm_magnitude_mask(w, 2, 8);
    if (last_mask.defined() && !at::equal(p, last_mask)) ++changed;
    last_mask = p;
    opt.zero_grad();
    const Gradients g = run_backward(layer, 20 + uint64_t(step));
    expect_close(g.dw, at::mm(g.dy.t(), g.x.detach()) + 0.01 * w * p.logical_not(), 1e-5,
                 "dW at step " + std::to_string(step));
    torch::NoGradGuard no_grad;
    expect_close(layer->forward(g.x), testing::reference(g.x, w * p) + layer->bias, 1e-5,
                 "forward at step " + std::to_string(step));
    opt.step();
  }
  EXPECT_GT(changed, 0) << "the steps are too small to change the mask: the test shows nothing";
}

// mask_every(3): steps 0, 3, 6 choose P (and BDWP's Q); the steps between multiply by the
// current weights at those positions. Eval-mode forwards count no step.
TEST(SparseNMTraining, MaskEveryKeepsTheMasksBetweenUpdates) {
  torch::manual_seed(15);
  NMSparseLinear layer(NMSparseLinearOptions(32, 16).decay(0).mask_every(3));
  torch::optim::SGD opt(layer->parameters(), torch::optim::SGDOptions(0.5));
  at::Tensor p, q;  // the masks of the last update
  int stale = 0;
  for (int step = 0; step < 8; ++step) {
    const at::Tensor w = layer->weight.detach().clone();
    const std::string what = " at step " + std::to_string(step);
    {
      // Eval: the masks of the last update (before the first, the weight's own).
      torch::NoGradGuard no_grad;
      layer->eval();
      const at::Tensor in_use = p.defined() ? p : nm_magnitude_mask(w, 2, 8);
      expect_close(layer->forward(torch::eye(32)), (w * in_use).t() + layer->bias, 1e-6,
                   "eval forward" + what);
      layer->train();
    }
    if (step % 3 == 0) {
      p = nm_magnitude_mask(w, 2, 8);
      q = nm_magnitude_mask(w.t(), 2, 8).t();
    } else if (!at::equal(p, nm_magnitude_mask(w, 2, 8))) {
      ++stale;
    }
    EXPECT_TRUE(at::equal(layer->mask(), p)) << "mask()" << what;
    opt.zero_grad();
    const Gradients g = run_backward(layer, 30 + uint64_t(step));
    expect_close(g.dx, testing::reference(g.dy, (w * q).t()), 1e-5, "BDWP dx" + what);
    expect_close(g.dw, at::mm(g.dy.t(), g.x.detach()), 1e-5, "dense dW" + what);
    opt.step();
  }
  EXPECT_GT(stale, 0) << "re-pruning never differed between updates: the test shows nothing";
}

TEST(SparseNMTraining, BadInputGivesClearErrors) {
  expect_error([] { NMSparseLinear(NMSparseLinearOptions(8, 8).mask_every(0)); },
               "mask_every 0: expected >= 1");
  expect_error([] { NMSparseLinear(NMSparseLinearOptions(8, 8).dense_grad_every(-1)); },
               "dense_grad_every -1: expected >= 0");
  expect_error([] { NMSparseLinear(NMSparseLinearOptions(8, 8).n(4).m(4)); }, "0 < N < M <= 32");
  expect_error([] { NMSparseLinear(NMSparseLinearOptions(0, 8)); }, "expected positive sizes");
  expect_error([] { parse_nm_training("bdwq"); }, "expected srste or bdwp");
  NMSparseLinear layer(NMSparseLinearOptions(8, 4));
  expect_error([&] { layer(torch::randn({2, 9})); }, "expected [*, 8]");
  expect_error(
      [] {
        NMSparse::prune(torch::randn({4, 10}), 2, 8, /*pad=*/false);
      },
      "M does not divide");
}

}  // namespace
}  // namespace strata::sparse
