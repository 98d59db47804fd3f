#pragma once
// The fixed QMoE dictionary (IST-DASLab/qmoe, sub1.py): 2^16 codewords, each a run of 1 to
// 14 "ternary pairs". A pair is two neighbouring weights of a row, w[2j] and w[2j+1], each
// a ternary code (0 = zero, 1 = the row's low level, 2 = the row's high level), numbered
// r = w[2j] + 3 * w[2j+1] in 0..8. The table is built exactly as the reference builds it,
// so that its decode table is bit-identical and compressed weights interoperate.

#include <cstdint>
#include <vector>

namespace strata::moe {

constexpr int64_t kTernaryCodewords = int64_t{1} << 16;
constexpr int kMaxPairsPerCodeword = 14;
// Weights (digits) one codeword can cover: 2 per pair.
constexpr int kMaxDigitsPerCodeword = 2 * kMaxPairsPerCodeword;
// The root node of the encoding trie: one past the last codeword, as in the reference.
constexpr int32_t kTernaryTrieRoot = static_cast<int32_t>(kTernaryCodewords);

struct TernaryDictionary {
  // Two words per codeword, the reference kernel's format: word h holds pairs 7h..7h+6,
  // pair j of the word in bits 4+4j.. (low 2 bits: w[2j], next 2 bits: w[2j+1]); the low
  // 4 bits of both words hold the codeword's number of pairs.
  std::vector<uint32_t> decode_table;
  // trie[9 * node + r]: the codeword for node's run followed by pair r, -1 if that run is
  // not in the dictionary. Nodes are codewords, plus kTernaryTrieRoot for the empty run.
  std::vector<int32_t> trie;

  int pairs(uint16_t codeword) const { return static_cast<int>(decode_table[2 * codeword] & 0xF); }
  // The ternary code (0, 1 or 2) of digit k (0 <= k < 2 * pairs) of a codeword.
  int digit(uint16_t codeword, int k) const {
    const uint32_t word = decode_table[2 * codeword + k / kMaxPairsPerCodeword];
    return static_cast<int>((word >> (4 + 2 * (k % kMaxPairsPerCodeword))) & 0x3);
  }
};

// The dictionary, built on first use (about 0.1 s) and shared; thread-safe.
const TernaryDictionary& ternary_dictionary();

}  // namespace strata::moe
