// Packed formats: round trips, padding, masks, and the errors for bad input.
#include "strata/sparse/formats.h"
#include "strata/sparse/pruning.h"

#include "sparse_test_util.h"

namespace strata::sparse {
namespace {

using testing::expect_error;
using testing::random_mask;
using testing::random_weight;

TEST(SparseFormats, BlockRoundTripEqualsMaskedWeight) {
  for (BlockShape shape :
       {BlockShape{1, 16}, BlockShape{4, 1}, BlockShape{2, 3}, BlockShape{8, 1}}) {
    for (double sparsity : {0.0, 0.5, 0.9, 1.0}) {
      const at::Tensor w = random_weight(37, 45, 3);  // divides none of the shapes but 1
      const at::Tensor mask = block_magnitude_mask(w, sparsity, shape);
      const BlockSparse b = BlockSparse::from_dense(w, mask, shape);
      EXPECT_TRUE(at::equal(b.to_dense(), w * mask)) << shape.str() << " at " << sparsity;
      EXPECT_EQ(b.layout.out_padded % shape.out, 0);
      EXPECT_EQ(b.layout.in_padded % shape.in, 0);
      EXPECT_EQ(b.values.size(0), b.layout.blocks());
    }
  }
}

TEST(SparseFormats, BlockKeepsPartialBlocksOfAnUnstructuredMask) {
  const at::Tensor w = random_weight(20, 24, 4);
  const at::Tensor mask = random_mask(20, 24, 0.7, 4);
  const BlockSparse b = BlockSparse::from_dense(w, mask, {4, 1});
  EXPECT_TRUE(at::equal(b.to_dense(), w * mask));
}

TEST(SparseFormats, BlockMagnitudeMaskKeepsTheLargestBlocks) {
  const at::Tensor w = random_weight(32, 64, 5);
  const at::Tensor mask = block_magnitude_mask(w, 0.75, {4, 1});
  EXPECT_EQ(mask.sum().item<int64_t>(), 32 * 64 / 4);
  // Block-constant: every 4 consecutive input channels of a row agree.
  const at::Tensor g = mask.view({32, 16, 4}).to(at::kInt).sum(2);
  EXPECT_TRUE(((g == 0) | (g == 4)).all().item<bool>());
  const at::Tensor norms = w.abs().view({32, 16, 4}).sum(2);
  EXPECT_GE(norms.masked_select(g == 4).min().item<float>(),
            norms.masked_select(g == 0).max().item<float>());
}

TEST(SparseFormats, Int8QuantizesPerOutputChannel) {
  const at::Tensor w = random_weight(19, 40, 6);
  const at::Tensor mask = block_magnitude_mask(w, 0.5, {4, 1});
  const Int8BlockSparse q = Int8BlockSparse::quantize(BlockSparse::from_dense(w, mask, {4, 1}));
  const at::Tensor qi = q.to_dense_int8();
  EXPECT_EQ(qi.abs().max().item<int>(), 127);
  EXPECT_FALSE((qi.ne(0) & mask.logical_not()).any().item<bool>());
  const at::Tensor masked = w * mask;
  EXPECT_LE((q.to_dense() - masked).abs().max().item<float>(),
            0.5f * q.scale.max().item<float>() + 1e-6f);
  EXPECT_TRUE(at::equal(q.row_sum.slice(0, 0, 19), qi.to(at::kInt).sum(1).to(at::kInt)));
}

TEST(SparseFormats, NMRoundTripAndExactlyNPerGroup) {
  for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {2, 8}, {1, 2}, {3, 7}, {31, 32}}) {
    const at::Tensor w = random_weight(13, 50, 7);  // 50: a padded last group for most M
    const at::Tensor mask = nm_magnitude_mask(w, n, m);
    const int64_t full = 50 / m;
    const at::Tensor counts = mask.slice(1, 0, full * m).view({13, full, m}).sum(2);
    EXPECT_TRUE((counts == n).all().item<bool>()) << n << ":" << m;
    const NMSparse s = NMSparse::from_dense(w, mask, n, m);
    EXPECT_TRUE(at::equal(s.to_dense(), w * mask)) << n << ":" << m;
    EXPECT_EQ(s.groups, (50 + m - 1) / m);
    // The kept weights are the largest of each group.
    const at::Tensor a = w.abs().slice(1, 0, full * m).view({13, full, m});
    const at::Tensor mk = mask.slice(1, 0, full * m).view({13, full, m});
    const at::Tensor kept_min = at::where(mk, a, at::full_like(a, 2.0)).amin(2);
    const at::Tensor dropped_max = at::where(mk, at::full_like(a, -1.0), a).amax(2);
    EXPECT_TRUE((kept_min >= dropped_max).all().item<bool>());
  }
}

TEST(SparseFormats, NMAcceptsSparserMasks) {
  const at::Tensor w = random_weight(8, 16, 8);
  at::Tensor mask = nm_magnitude_mask(w, 2, 4);
  mask.select(0, 3).fill_(false);
  EXPECT_TRUE(at::equal(NMSparse::from_dense(w, mask, 2, 4).to_dense(), w * mask));
}

TEST(SparseFormats, CsrRoundTrip) {
  for (double sparsity : {0.0, 0.6, 1.0}) {
    const at::Tensor w = random_weight(21, 33, 9);
    const at::Tensor mask = random_mask(21, 33, sparsity, 9);
    const CsrSparse c = CsrSparse::from_dense(w, mask);
    EXPECT_EQ(c.nnz(), mask.sum().item<int64_t>());
    EXPECT_TRUE(at::equal(c.to_dense(), w * mask));
  }
  const at::Tensor w = random_weight(10, 10, 10);
  EXPECT_EQ(magnitude_mask(w, 0.7).sum().item<int64_t>(), 30);
}

TEST(SparseFormats, BadInputGivesClearErrors) {
  const at::Tensor w = random_weight(8, 10, 11);
  const at::Tensor ok = at::ones({8, 10}, at::kBool);
  expect_error(
      [&] {
        BlockSparse::from_dense(w, at::ones({8, 9}, at::kBool), {1, 16});
      },
      "mask [8, 9] does not match weight [8, 10]");
  expect_error([&] { NMSparse::from_dense(w, ok, 5, 4); }, "N:M 5:4: expected 0 < N < M <= 32");
  expect_error([&] { NMSparse::from_dense(w, ok, 4, 4); }, "expected 0 < N < M <= 32");
  expect_error([&] { nm_magnitude_mask(w, 2, 33); }, "expected 0 < N < M <= 32");
  expect_error([&] { NMSparse::from_dense(w, ok, 2, 4); },
               "mask is not 2:4: row 0, group 0 has 4 non-zeros");
  expect_error([&] { NMSparse::from_dense(w, nm_magnitude_mask(w, 2, 4), 2, 4, /*pad=*/false); },
               "M does not divide in (10 % 4 = 2) and pad is false");
  expect_error(
      [&] {
        BlockSparse::from_dense(w, ok, {4, 1}, /*pad=*/false);
      },
      "block 4x1 does not divide weight [8, 10]: in (10 % 4 = 2) and pad is false");
  expect_error(
      [&] {
        BlockSparse::from_dense(w, ok, {1, 16}, /*pad=*/false);
      },
      "block 1x16 does not divide weight [8, 10]: out (8 % 16 = 8)");
  expect_error(
      [&] {
        BlockSparse::from_dense(w, ok, {0, 4});
      },
      "block shape 0x4: expected positive sizes");
  expect_error(
      [&] {
        BlockSparse::from_dense(at::ones({3}), at::ones({3}, at::kBool), {4, 1});
      },
      "expected a 2-D weight [out, in], got [3]");
  expect_error([&] { magnitude_mask(w, 1.5); }, "sparsity 1.5: expected 0..1");
  // Padding is the default and changes nothing.
  EXPECT_TRUE(at::equal(BlockSparse::from_dense(w, ok, {4, 1}).to_dense(), w));
}

}  // namespace
}  // namespace strata::sparse
