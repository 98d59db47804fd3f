// Encoding and decoding of ternary matrices: exact round trips for any shape, the
// reference's greedy encoding on hand-checked rows, and malformed data rejected.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/moe/ternary_codec.h"
#include "strata/moe/ternary_dictionary.h"

namespace strata::moe {
namespace {

// Ternary codes with the given share of zeros, the rest split between 1 and 2.
at::Tensor random_codes(int64_t rows, int64_t cols, double zeros, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor u = at::rand({rows, cols}, gen);
  const at::Tensor nonzero = u >= zeros;
  const at::Tensor high = at::rand({rows, cols}, gen) < 0.5;
  return (nonzero.to(at::kByte) * (1 + high.to(at::kByte))).contiguous();
}

at::Tensor random_levels(int64_t rows, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::stack({-at::rand({rows}, gen) - 0.01, at::rand({rows}, gen) + 0.01}, 1);
}

TEST(TernaryCodec, RoundTripsExactlyForAnyShape) {
  // Odd and prime widths, a single column, widths around the 28 digits of a codeword.
  const std::vector<std::pair<int64_t, int64_t>> shapes{
      {1, 1}, {3, 2}, {5, 27}, {7, 28}, {4, 29}, {33, 31}, {17, 97}, {64, 256}, {10, 1001}};
  uint64_t seed = 1;
  for (const auto& [rows, cols] : shapes) {
    for (const double zeros : {0.0, 0.5, 0.885, 1.0}) {
      const at::Tensor codes = random_codes(rows, cols, zeros, seed++);
      const at::Tensor levels = random_levels(rows, seed++);
      const TernaryMatrix m = ternary_encode(codes, levels);
      ASSERT_TRUE(at::equal(ternary_decode_codes(m), codes)) << rows << "x" << cols;
      const at::Tensor low = levels.select(1, 0).to(at::kBFloat16).to(at::kFloat).unsqueeze(1);
      const at::Tensor high = levels.select(1, 1).to(at::kBFloat16).to(at::kFloat).unsqueeze(1);
      const at::Tensor expected =
          at::where(codes == 1, low, at::where(codes == 2, high, at::zeros({1})));
      ASSERT_TRUE(at::equal(ternary_decode(m), expected)) << rows << "x" << cols;
    }
  }
}

TEST(TernaryCodec, DenseTernaryWeightsRoundTrip) {
  const at::Tensor codes = random_codes(9, 45, 0.8, 7);
  const at::Tensor levels = random_levels(9, 8).to(at::kBFloat16).to(at::kFloat);
  const at::Tensor low = levels.select(1, 0).unsqueeze(1), high = levels.select(1, 1).unsqueeze(1);
  at::Tensor w = at::where(codes == 1, low, at::where(codes == 2, high, at::zeros({1})));
  w[3].clamp_min_(0);  // a row without its low level
  const TernaryMatrix m = ternary_encode_dense(w);
  EXPECT_TRUE(at::equal(ternary_decode(m), w));
  EXPECT_EQ(m.levels[3][0].item<float>(), 0.f);
  w[2][5] = 0.123f;
  EXPECT_THROW(ternary_encode_dense(w), strata::Error);
}

TEST(TernaryCodec, GreedyLongestMatchAsTheReference) {
  const TernaryDictionary& dict = ternary_dictionary();
  // 24 zero pairs: the longest match first, 14 zero pairs (codeword 25), then 10 (codeword
  // 9, runs of zeros come first); a single column: the pair r = code (codeword 12 for code
  // 1); 3 columns: the pairs (1, 2) and (2, pad 0).
  auto encode_row = [](std::vector<uint8_t> row) {
    const at::Tensor codes =
        at::tensor(std::vector<int64_t>(row.begin(), row.end())).to(at::kByte).unsqueeze(0);
    const TernaryMatrix m = ternary_encode(codes, at::tensor({-1.f, 1.f}).unsqueeze(0));
    std::vector<uint16_t> out;
    for (int64_t i = 0; i < m.codes.size(0); ++i)
      out.push_back(uint16_t(m.codes[i].item<int16_t>()));
    return out;
  };
  EXPECT_EQ(encode_row(std::vector<uint8_t>(48, 0)), (std::vector<uint16_t>{25, 9}));
  EXPECT_EQ(dict.pairs(25), 14);
  for (int k = 0; k < 28; ++k) EXPECT_EQ(dict.digit(25, k), 0);
  EXPECT_EQ(encode_row({1}), (std::vector<uint16_t>{12}));
  const std::vector<uint16_t> three = encode_row({1, 2, 2});
  int pairs = 0;
  for (const uint16_t c : three) pairs += dict.pairs(c);
  EXPECT_EQ(pairs, 2);
  EXPECT_EQ(dict.digit(three[0], 0), 1);
  EXPECT_EQ(dict.digit(three[0], 1), 2);
}

TEST(TernaryCodec, SparseCodesTakeUnderOneBitPerWeight) {
  const TernaryMatrix m = ternary_encode(random_codes(256, 512, 0.9, 3), random_levels(256, 4));
  EXPECT_LT(m.bits_per_weight(), 1.0);
  EXPECT_GT(m.bits_per_weight(), 0.3);
}

TEST(TernaryCodec, MalformedDataIsRejected) {
  TernaryMatrix m = ternary_encode(random_codes(4, 50, 0.5, 5), random_levels(4, 6));
  TernaryMatrix short_row = m;
  short_row.cols = 80;  // the codewords cover 50 columns, not 80
  EXPECT_THROW(check_ternary_matrix(short_row, "test"), strata::Error);
  TernaryMatrix bad_offsets = m;
  bad_offsets.row_offsets = m.row_offsets.clone();
  bad_offsets.row_offsets[4] = int32_t(m.codes.size(0) + 1);
  EXPECT_THROW(check_ternary_matrix(bad_offsets, "test"), strata::Error);
  EXPECT_THROW(ternary_encode(at::full({2, 3}, 3, at::kByte), at::zeros({2, 2})), strata::Error);
  EXPECT_NO_THROW(check_ternary_matrix(m, "test"));
}

}  // namespace
}  // namespace strata::moe
