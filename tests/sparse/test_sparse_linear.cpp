// SparseLinear: a Linear packed in each format gives linear(x) with the pruned weight.
#include "strata/sparse/pruning.h"
#include "strata/sparse/sparse_linear.h"

#include "sparse_test_util.h"

namespace strata::sparse {
namespace {

using testing::expect_close;
using testing::expect_error;

torch::nn::Linear trained_linear(int64_t in, int64_t out, bool bias = true) {
  torch::manual_seed(1);
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

TEST(SparseLinear, EveryFormatMatchesTheDenseLinearOfItsWeight) {
  torch::NoGradGuard no_grad;
  auto linear = trained_linear(50, 40);
  const at::Tensor x = at::randn({2, 3, 50});
  for (SparseFormat f :
       {SparseFormat::Block, SparseFormat::NM, SparseFormat::Csr, SparseFormat::Int8Block}) {
    SparseLinear sparse(linear, SparseLinearOptions().format(f).sparsity(0.8));
    const at::Tensor y = sparse(x);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 40}));
    const at::Tensor ref = torch::nn::functional::linear(x, sparse->dense_weight(), linear->bias);
    // int8 also quantizes the activations: within a few activation steps of the reference.
    const double tol = f == SparseFormat::Int8Block ? 2e-2 : 1e-5;
    expect_close(y, ref, tol, format_name(f));
    const double kept = sparse->dense_weight().ne(0).to(at::kDouble).mean().item<double>();
    if (f == SparseFormat::NM) {
      EXPECT_NEAR(kept, 26.0 / 50, 1e-9);  // 12 groups x 2 + the 2 of the last
    } else {
      EXPECT_NEAR(kept, 0.2, 0.05) << format_name(f);
    }
  }
}

TEST(SparseLinear, GivenMaskAndNoBias) {
  torch::NoGradGuard no_grad;
  auto linear = trained_linear(64, 32, /*bias=*/false);
  const at::Tensor mask = nm_magnitude_mask(linear->weight, 2, 8);
  SparseLinear sparse(linear, SparseLinearOptions().format(SparseFormat::NM).n(2).m(8), mask);
  EXPECT_TRUE(at::equal(sparse->dense_weight(), linear->weight * mask));
  const at::Tensor x = at::randn({5, 64});
  expect_close(sparse(x), x.matmul((linear->weight * mask).t()), 1e-5, "2:8");
  EXPECT_EQ(sparse->named_buffers().size(), 0u);
  std::ostringstream s;
  s << *sparse;
  EXPECT_NE(s.str().find("format=nm"), std::string::npos) << s.str();
}

TEST(SparseLinear, PortableOptionAndBlockShape) {
  torch::NoGradGuard no_grad;
  auto linear = trained_linear(48, 33);
  SparseLinear fast(linear, SparseLinearOptions().sparsity(0.7));
  SparseLinear slow(linear, SparseLinearOptions().sparsity(0.7).spmm(SpmmOptions().portable(true)));
  EXPECT_EQ(slow->kernel(), "portable");
  const at::Tensor x = at::randn({7, 48});
  expect_close(fast(x), slow(x), 1e-5, "fast vs portable");
  SparseLinear blocks(linear, SparseLinearOptions().block(BlockShape{2, 16}).sparsity(0.5));
  EXPECT_EQ(std::get<BlockSparse>(blocks->weight()).layout.shape.str(), "2x16");
}

TEST(SparseLinear, InferenceOnly) {
  auto linear = trained_linear(16, 8);
  SparseLinear sparse(linear, SparseLinearOptions().sparsity(0.5));
  const at::Tensor x = torch::randn({2, 16}, torch::requires_grad());
  expect_error([&] { sparse(x); }, "SparseLinear is inference only");
  torch::NoGradGuard no_grad;
  EXPECT_EQ(sparse(x).sizes(), (std::vector<int64_t>{2, 8}));
  expect_error([&] { sparse(at::randn({2, 15})); }, "expected [*, 16]");
}

}  // namespace
}  // namespace strata::sparse
