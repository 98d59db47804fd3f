// SpGEMM against torch::mm on dense copies: random and power-law matrices, both
// accumulators and the automatic choice, one and several threads.
#include "strata/sparse/spgemm.h"

#include "sparse_test_util.h"

namespace strata::sparse {
namespace {

using testing::expect_error;
using testing::ThreadsGuard;

// A [rows, cols] matrix with about `density` of its entries non-zero.
at::Tensor random_sparse(int64_t rows, int64_t cols, double density, uint64_t seed) {
  torch::manual_seed(seed);
  return (at::rand({rows, cols}) < density).to(at::kFloat) * (at::rand({rows, cols}) * 2 - 1);
}

// Power law: row i keeps about cols * (i + 1)^-1.2 entries (a few dense rows, many almost
// empty ones), and the rows are shuffled so that heavy rows land anywhere.
at::Tensor power_law_sparse(int64_t rows, int64_t cols, uint64_t seed) {
  torch::manual_seed(seed);
  const at::Tensor density =
      at::pow(at::arange(1, rows + 1, at::kDouble), -1.2).index_select(0, at::randperm(rows));
  const at::Tensor keep = at::rand({rows, cols}, at::kDouble) < density.unsqueeze(1);
  return keep.to(at::kFloat) * (at::rand({rows, cols}) * 2 - 1);
}

void expect_product(const at::Tensor& a, const at::Tensor& b, const SpgemmOptions& options,
                    const std::string& what) {
  const CsrSparse c = spgemm(csr_from_dense(a), csr_from_dense(b), options);
  ASSERT_EQ(c.out_features, a.size(0)) << what;
  ASSERT_EQ(c.in_features, b.size(1)) << what;
  const at::Tensor ref = at::mm(a.to(at::kDouble), b.to(at::kDouble));
  if (ref.numel() > 0) testing::expect_close(c.to_dense(), ref, 1e-5, what);
  // Every structural non-zero of the reference is stored; columns ascend within a row.
  const at::Tensor reach = at::mm((a != 0).to(at::kFloat), (b != 0).to(at::kFloat)) > 0;
  EXPECT_EQ(c.nnz(), reach.sum().item<int64_t>()) << what;
  for (int64_t i = 0; i < c.out_features; ++i) {
    const at::Tensor cols =
        c.col.slice(0, c.row_ptr[i].item<int64_t>(), c.row_ptr[i + 1].item<int64_t>());
    if (cols.numel() > 1) {
      EXPECT_TRUE((cols.slice(0, 1) > cols.slice(0, 0, -1)).all().item<bool>()) << what;
    }
  }
}

TEST(SparseSpgemm, EqualsDenseProductForEveryAccumulator) {
  ThreadsGuard guard;
  const at::Tensor a = random_sparse(67, 45, 0.1, 1);
  const at::Tensor b = random_sparse(45, 83, 0.15, 2);
  for (int threads : {1, 2, 3}) {
    at::set_num_threads(threads);
    for (auto acc : {SpgemmAccumulator::Auto, SpgemmAccumulator::Hash, SpgemmAccumulator::Dense})
      for (int64_t buffer : {int64_t{256} << 20, int64_t{0}})  // one pass, two passes
        expect_product(a, b, SpgemmOptions().accumulator(acc).max_buffer_bytes(buffer),
                       "threads " + std::to_string(threads) + " accumulator " +
                           std::to_string(int(acc)) + " buffer " + std::to_string(buffer));
  }
}

TEST(SparseSpgemm, PowerLawMatrices) {
  ThreadsGuard guard;
  at::set_num_threads(2);
  const at::Tensor a = power_law_sparse(300, 200, 3);
  const at::Tensor b = power_law_sparse(200, 400, 4);
  for (auto acc : {SpgemmAccumulator::Auto, SpgemmAccumulator::Hash, SpgemmAccumulator::Dense}) {
    expect_product(a, b, SpgemmOptions().accumulator(acc), "power law " + std::to_string(int(acc)));
    expect_product(a, b, SpgemmOptions().accumulator(acc).max_buffer_bytes(0),
                   "power law, two passes " + std::to_string(int(acc)));
  }
  // The automatic choice uses both accumulators on these rows.
  expect_product(a, a.t().contiguous(), SpgemmOptions().dense_ratio(4), "A A^T");
}

TEST(SparseSpgemm, EmptyAndDenseEdges) {
  expect_product(at::zeros({5, 7}), random_sparse(7, 4, 0.5, 5), {}, "A empty");
  expect_product(random_sparse(5, 7, 0.5, 6), at::zeros({7, 4}), {}, "B empty");
  expect_product(random_sparse(6, 9, 1.0, 7), random_sparse(9, 5, 1.0, 8), {}, "dense");
  expect_product(at::zeros({0, 3}), random_sparse(3, 4, 0.5, 9), {}, "no rows");
  // Cancelling products keep their structural entry.
  const at::Tensor a = torch::tensor({{1.0f, 1.0f}});
  const at::Tensor b = torch::tensor({{2.0f}, {-2.0f}});
  const CsrSparse c = spgemm(csr_from_dense(a), csr_from_dense(b));
  EXPECT_EQ(c.nnz(), 1);
  EXPECT_EQ(c.values[0].item<float>(), 0.0f);
}

TEST(SparseSpgemm, MultiplyAddsCountEveryProduct) {
  const at::Tensor a = random_sparse(20, 30, 0.2, 10), b = random_sparse(30, 25, 0.3, 11);
  const int64_t expected =
      at::mm((a != 0).to(at::kDouble), (b != 0).to(at::kDouble)).sum().item<double>();
  EXPECT_EQ(spgemm_multiply_adds(csr_from_dense(a), csr_from_dense(b)), expected);
}

TEST(SparseSpgemm, BadInputGivesClearErrors) {
  const CsrSparse a = csr_from_dense(random_sparse(4, 5, 0.5, 12));
  const CsrSparse b = csr_from_dense(random_sparse(6, 3, 0.5, 13));
  expect_error([&] { spgemm(a, b); }, "inner sizes differ");
  const CsrSparse square = csr_from_dense(random_sparse(5, 5, 0.5, 15));
  expect_error([&] { spgemm(square, square, SpgemmOptions().dense_ratio(0)); }, "dense_ratio");
  CsrSparse broken = csr_from_dense(random_sparse(5, 5, 0.5, 14));
  broken.row_ptr = broken.row_ptr.slice(0, 0, 3);
  expect_error([&] { spgemm(broken, broken); }, "not a CSR matrix");
}

}  // namespace
}  // namespace strata::sparse
