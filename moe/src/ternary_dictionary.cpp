#include "strata/moe/ternary_dictionary.h"

#include <array>
#include <cmath>
#include <queue>
#include <string>
#include <unordered_map>

#include "strata/core/error.h"

namespace strata::moe {

namespace {

// A run of pairs as the reference's Python list, packed so that comparing the integers
// compares the lists: pair k sits in nibble 15 - k as r + 1, and a missing pair is 0, so a
// list sorts before its extensions, as Python orders lists. 14 pairs use the top 56 bits.
struct Run {
  double key;  // -probability, exactly as the reference multiplies it (see build())
  uint64_t packed;
  int length;

  int pair(int k) const { return static_cast<int>((packed >> (60 - 4 * k)) & 0xF) - 1; }
  Run extended(int r, double pair_probability) const {
    return {key * pair_probability, packed | (uint64_t(r + 1) << (60 - 4 * length)), length + 1};
  }
};

// heapq pops the smallest (key, list) tuple; priority_queue pops the largest, so invert.
struct PopsLater {
  bool operator()(const Run& a, const Run& b) const {
    return a.key != b.key ? a.key > b.key : a.packed > b.packed;
  }
};

// The reference's pair probabilities: 0.885 for zero (the sparsity QMoE measures after
// ternary GPTQ), the rest split between the two levels; of pair r = 3a + b: p[a] * p[b],
// with the reference's evaluation order (1.0 * p[a]) * p[b].
PairProbabilities reference_probabilities() {
  const double zeros = .885;
  const std::array<double, 3> code_probability{zeros, (1 - zeros) / 2, (1 - zeros) / 2};
  PairProbabilities pair_probability{};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      pair_probability[3 * a + b] = (1.0 * code_probability[a]) * code_probability[b];
  return pair_probability;
}

// The heap keys are products of the pair probabilities in the order the runs grow. Ties
// between equal keys are frequent (e.g. pairs 1 and 3), and the reference breaks them by
// comparing the lists, as PopsLater does, so every codeword lands at the same index.
TernaryDictionary build(const PairProbabilities& pair_probability) {
  // Most probable runs first: pop the best run, keep it unless it is the empty start,
  // extend it by every pair unless it is already 14 pairs long.
  std::vector<Run> runs;
  runs.reserve(kTernaryCodewords);
  std::priority_queue<Run, std::vector<Run>, PopsLater> heap;
  heap.push({-1.0, 0, 0});
  while (static_cast<int64_t>(runs.size()) < kTernaryCodewords) {
    const Run top = heap.top();
    heap.pop();
    if (top.key != -1.0) runs.push_back(top);
    if (top.length == kMaxPairsPerCodeword) continue;
    for (int r = 0; r < 9; ++r) heap.push(top.extended(r, pair_probability[r]));
  }

  TernaryDictionary dict;
  dict.decode_table.assign(2 * kTernaryCodewords, 0);
  for (int64_t i = 0; i < kTernaryCodewords; ++i) {
    const Run& run = runs[i];
    for (int half = 0; half < 2; ++half) {
      uint32_t word = 0;
      for (int j = 0; j < 7 && 7 * half + j < run.length; ++j) {
        const int r = run.pair(7 * half + j);
        word |= uint32_t(r % 3) << (4 * j) | uint32_t(r / 3) << (4 * j + 2);
      }
      dict.decode_table[2 * i + half] = word << 4 | uint32_t(run.length);
    }
  }

  // Runs are popped after their prefixes (an extension is never more probable), so every
  // prefix of a codeword is a codeword and the trie's nodes are exactly the codewords.
  dict.trie.assign(9 * (kTernaryCodewords + 1), -1);
  std::unordered_map<uint64_t, int32_t> index_of;
  index_of.reserve(2 * kTernaryCodewords);
  for (int64_t i = 0; i < kTernaryCodewords; ++i) index_of.emplace(runs[i].packed, int32_t(i));
  for (int64_t i = 0; i < kTernaryCodewords; ++i) {
    const Run& run = runs[i];
    const int last = run.pair(run.length - 1);
    const uint64_t prefix = run.packed & ~(uint64_t{0xF} << (60 - 4 * (run.length - 1)));
    const int32_t parent = run.length == 1 ? kTernaryTrieRoot : index_of.at(prefix);
    dict.trie[9 * int64_t(parent) + last] = int32_t(i);
  }

  dict.pair_probability = pair_probability;
  dict.masks.assign(4 * kTernaryCodewords, 0);
  dict.digits.resize(kTernaryCodewords);
  for (int64_t c = 0; c < kTernaryCodewords; ++c) {
    for (int k = 0; k < 2 * dict.pairs(uint16_t(c)); ++k) {
      const int code = dict.digit(uint16_t(c), k);
      if (code != 0) dict.masks[4 * c + 2 * (code - 1) + k / 16] |= uint16_t(1u << (k % 16));
    }
    dict.digits[c] = uint8_t(2 * dict.pairs(uint16_t(c)));
  }
  return dict;
}

}  // namespace

const TernaryDictionary& ternary_dictionary() {
  static const TernaryDictionary dict = [] {
    TernaryDictionary d = build(reference_probabilities());
    d.reference = true;
    return d;
  }();
  return dict;
}

std::shared_ptr<const TernaryDictionary> make_ternary_dictionary(
    const PairProbabilities& probability, const std::string& what) {
  double sum = 0;
  for (size_t r = 0; r < probability.size(); ++r) {
    // Below 1e-6 a pair might get no codeword of its own (Tunstall keeps runs down to
    // about 2^-16), and such a pair could not be encoded.
    STRATA_CHECK(std::isfinite(probability[r]) && probability[r] >= 1e-6 && probability[r] <= 1,
                 what, ": probability of pair ", r, " is ", probability[r],
                 ", expected a number in [1e-6, 1]");
    sum += probability[r];
  }
  STRATA_CHECK(std::abs(sum - 1) <= 1e-9, what, ": the 9 pair probabilities sum to ", sum,
               ", expected 1");
  auto dict = std::make_shared<TernaryDictionary>(build(probability));
  for (int r = 0; r < 9; ++r) {
    STRATA_CHECK(dict->trie[9 * int64_t(kTernaryTrieRoot) + r] != -1, what, ": pair ", r,
                 " (probability ", probability[r], ") gets no codeword, expected every pair to");
  }
  return dict;
}

}  // namespace strata::moe
