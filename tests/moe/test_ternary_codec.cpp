// Encoding and decoding of ternary matrices: exact round trips for any shape, the
// reference's greedy encoding on hand-checked rows, and malformed data rejected.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/test_util.h"
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

TEST(TernaryCodec, FittedDictionaryRoundTripsExactlyInFewerBits) {
  // Trained experts' statistics (80-83% zeros, docs/benchmarks.md), with more low than
  // high codes; odd widths pair a last column with a zero, as the encoder does.
  uint64_t seed = 20;
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {512, 256}, {256, 512}, {33, 31}, {5, 1}, {7, 29}}) {
    at::Tensor codes = random_codes(rows, cols, 0.81, seed++);
    codes = at::where(at::rand({rows, cols}) < 0.2, (codes > 0).to(at::kByte), codes);
    const at::Tensor levels = random_levels(rows, seed++);
    const auto fitted = make_ternary_dictionary(fit_pair_probabilities({codes}));
    const TernaryMatrix m = ternary_encode(codes, levels, fitted);
    EXPECT_TRUE(at::equal(ternary_decode_codes(m), codes)) << rows << "x" << cols;
    EXPECT_TRUE(
        at::equal(ternary_row_offsets(m.codes, rows, cols, *fitted, "test"), m.row_offsets));
    if (rows * cols < 10000) continue;
    const TernaryMatrix reference = ternary_encode(codes, levels);
    EXPECT_TRUE(at::equal(ternary_decode(reference), ternary_decode(m)));
    // Fitted: fewer codewords, and no offsets to store.
    EXPECT_LT(m.codes.size(0), reference.codes.size(0) * 0.93) << rows << "x" << cols;
    EXPECT_LT(m.bits_per_weight(), 0.88 * reference.bits_per_weight()) << rows << "x" << cols;
  }
}

TEST(TernaryCodec, FittedProbabilitiesOfTheReferenceStatisticsGiveTheReferenceTable) {
  // make_ternary_dictionary is the reference's construction for any probabilities.
  const std::array<double, 3> p{.885, (1 - .885) / 2, (1 - .885) / 2};
  PairProbabilities pairs{};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) pairs[3 * a + b] = (1.0 * p[a]) * p[b];
  EXPECT_EQ(make_ternary_dictionary(pairs)->decode_table, ternary_dictionary().decode_table);
}

TEST(TernaryCodec, BadPairProbabilitiesAndOffsetsAreRefused) {
  PairProbabilities p{};
  p.fill(1.0 / 9);
  p[4] = std::nan("");
  EXPECT_EQ(strata::test::error_of([&] { make_ternary_dictionary(p, "dict"); }),
            "dict: probability of pair 4 is nan, expected a number in [1e-6, 1]");
  p[4] = 2.0 / 9;
  EXPECT_NE(strata::test::error_of([&] {
              make_ternary_dictionary(p, "dict");
            }).find("dict: the 9 pair probabilities sum to 1.11"),
            std::string::npos);
  // Codes that stop inside a row, or run past the last one.
  const at::Tensor codes = random_codes(4, 50, 0.5, 5);
  const TernaryMatrix m = ternary_encode(codes, random_levels(4, 6));
  EXPECT_NE(strata::test::error_of([&] {
              ternary_row_offsets(m.codes, 5, 50, ternary_dictionary(), "x");
            }).find("x: row 4 decodes to 0 weights, expected 50"),
            std::string::npos);
  EXPECT_EQ(strata::test::error_of([&] {
              ternary_row_offsets(m.codes, 3, 50, ternary_dictionary(), "x");
            }).find("x: "),
            0u);
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
