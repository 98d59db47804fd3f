#pragma once
// The fixed QMoE dictionary (IST-DASLab/qmoe, sub1.py): 2^16 codewords, each a run of 1 to
// 14 "ternary pairs". A pair is two neighbouring weights of a row, w[2j] and w[2j+1], each
// a ternary code (0 = zero, 1 = the row's low level, 2 = the row's high level), numbered
// r = w[2j] + 3 * w[2j+1] in 0..8. The table is built exactly as the reference builds it,
// so that its decode table is bit-identical and compressed weights interoperate.
//
// The same construction (Tunstall's: the 2^16 most probable runs) from other pair
// probabilities gives a dictionary fitted to a model's own ternary statistics
// (make_ternary_dictionary, fit_pair_probabilities): the reference assumes 88.5% zeros,
// trained experts with 80-83% pay about 30% more bits per weight under it.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace strata::moe {

constexpr int64_t kTernaryCodewords = int64_t{1} << 16;
constexpr int kMaxPairsPerCodeword = 14;
// Weights (digits) one codeword can cover: 2 per pair.
constexpr int kMaxDigitsPerCodeword = 2 * kMaxPairsPerCodeword;
// The root node of the encoding trie: one past the last codeword, as in the reference.
constexpr int32_t kTernaryTrieRoot = static_cast<int32_t>(kTernaryCodewords);

// Probabilities of the 9 pairs r = a + 3b the dictionary is built for.
using PairProbabilities = std::array<double, 9>;

struct TernaryDictionary {
  PairProbabilities pair_probability{};
  bool reference = false;  // built by ternary_dictionary(): QMoE's table
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

  // What the kernels read, derived from decode_table: 4 digit masks per codeword (low
  // digits 0-15, 16-31, high digits 0-15, 16-31: bit k set where digit k is code 1 (2);
  // compressed_expert_kernels.h's CodewordMasks) and its number of digits (2 x pairs).
  std::vector<uint16_t> masks;
  std::vector<uint8_t> digits;
};

// The reference dictionary, built on first use (about 0.1 s) and shared; thread-safe.
const TernaryDictionary& ternary_dictionary();

// The dictionary of the 2^16 most probable runs under `probability` (the reference's
// construction and tie-breaking). `what` names the probabilities in errors (e.g. "file
// x.qmoe: layer 'blocks.0.moe' dictionary"): each must be finite and >= 1e-6 and they
// must sum to 1 within 1e-9, and every single pair must get a codeword.
std::shared_ptr<const TernaryDictionary> make_ternary_dictionary(
    const PairProbabilities& probability, const std::string& what = "ternary dictionary");

}  // namespace strata::moe
