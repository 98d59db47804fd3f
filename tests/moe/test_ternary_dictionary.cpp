// The QMoE dictionary against figures of the reference's own table (IST-DASLab/qmoe
// sub1.py setup(), run once in Python to read them off): a few entries and a hash of all
// 2 x 65536 words, plus the properties the encoder relies on.
#include <gtest/gtest.h>

#include <set>

#include "strata/moe/ternary_dictionary.h"

namespace strata::moe {
namespace {

TEST(TernaryDictionary, EqualsTheReferenceTable) {
  const TernaryDictionary& dict = ternary_dictionary();
  ASSERT_EQ(dict.decode_table.size(), size_t(2 * 65536));
  // Codewords 0..11 are runs of 1..12 zero pairs (0.885^2 per pair beats one nonzero
  // pair until the 13th); codeword 12 is the pair r = 1 (w[0] = low, w[1] = 0).
  EXPECT_EQ(dict.decode_table[0], 0x1u);
  EXPECT_EQ(dict.decode_table[1], 0x1u);
  EXPECT_EQ(dict.decode_table[2], 0x2u);
  EXPECT_EQ(dict.decode_table[3], 0x2u);
  EXPECT_EQ(dict.decode_table[24], 0x11u);
  EXPECT_EQ(dict.decode_table[25], 0x1u);
  EXPECT_EQ(dict.decode_table[2 * 1000], 0x4040006u);
  EXPECT_EQ(dict.decode_table[2 * 1000 + 1], 0x6u);
  EXPECT_EQ(dict.decode_table[2 * 40000], 0x4bu);
  EXPECT_EQ(dict.decode_table[2 * 40000 + 1], 0x402bu);
  // The last codeword: pairs [0,0,0,2,0,1,0,0,2,0,0,0,0] (13 pairs).
  EXPECT_EQ(dict.decode_table[2 * 65535], 0x102000du);
  EXPECT_EQ(dict.decode_table[2 * 65535 + 1], 0x20du);
  // FNV-1a 64 over the little-endian bytes of the whole table, as the reference's
  // dec.numpy().tobytes() hashes.
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const uint32_t word : dict.decode_table)
    for (int b = 0; b < 4; ++b) hash = (hash ^ ((word >> (8 * b)) & 0xFF)) * 0x100000001b3ull;
  EXPECT_EQ(hash, 0x1a8a6bce1bcd5e4full);
}

TEST(TernaryDictionary, CodewordsAreDistinctPrefixClosedRuns) {
  const TernaryDictionary& dict = ternary_dictionary();
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (int64_t i = 0; i < kTernaryCodewords; ++i) {
    const uint32_t w0 = dict.decode_table[2 * i], w1 = dict.decode_table[2 * i + 1];
    const int pairs = dict.pairs(uint16_t(i));
    ASSERT_GE(pairs, 1);
    ASSERT_LE(pairs, kMaxPairsPerCodeword);
    ASSERT_EQ(w1 & 0xF, uint32_t(pairs)) << "both words carry the length";
    ASSERT_TRUE(seen.insert({w0, w1}).second) << "codeword " << i << " appears twice";
    for (int k = 0; k < 2 * pairs; ++k) ASSERT_LE(dict.digit(uint16_t(i), k), 2);
  }
  // Every run of one pair is a codeword, and every codeword extends its prefix by one
  // pair in the trie, so the greedy encoder never gets stuck.
  int64_t edges = 0;
  for (int r = 0; r < 9; ++r) ASSERT_GE(dict.trie[9 * int64_t(kTernaryTrieRoot) + r], 0);
  for (int64_t node = 0; node <= kTernaryCodewords; ++node) {
    for (int r = 0; r < 9; ++r) {
      const int32_t child = dict.trie[9 * node + r];
      if (child < 0) continue;
      ++edges;
      const int parent_pairs = node == kTernaryTrieRoot ? 0 : dict.pairs(uint16_t(node));
      ASSERT_EQ(dict.pairs(uint16_t(child)), parent_pairs + 1);
      ASSERT_EQ(dict.digit(uint16_t(child), 2 * parent_pairs), r % 3);
      ASSERT_EQ(dict.digit(uint16_t(child), 2 * parent_pairs + 1), r / 3);
    }
  }
  EXPECT_EQ(edges, kTernaryCodewords) << "every codeword has exactly one parent";
}

}  // namespace
}  // namespace strata::moe
