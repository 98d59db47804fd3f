#pragma once
// A ternary weight matrix in QMoE's compressed form (IST-DASLab/qmoe, sub1.py): every row
// is encoded on its own with the fixed dictionary (ternary_dictionary.h), greedily taking
// the longest codeword that matches, and the rows' code streams are stored back to back.
// The tensors have the reference's dtypes and meaning, so data converts one to one to its
// Sub1Linear buffers (w_comp, row_off, ter_minmax).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/moe/ternary_dictionary.h"

namespace strata::moe {

struct TernaryMatrix {
  int64_t rows = 0, cols = 0;
  at::Tensor codes;        // int16 [n]: codewords (read as uint16), row after row
  at::Tensor row_offsets;  // int32 [rows + 1]: row r's codewords are codes[off[r], off[r+1])
  at::Tensor levels;       // bfloat16 [rows, 2]: the row's (low, high) values of codes 1, 2
  // The dictionary the codes are in; null: the reference one (ternary_dictionary()).
  std::shared_ptr<const TernaryDictionary> fitted;

  const TernaryDictionary& dictionary() const { return fitted ? *fitted : ternary_dictionary(); }
  // Bits per weight of the encoding as a .qmoe file stores it: codes and levels, and the
  // row offsets with the reference dictionary (the reference's Sub1Linear reads them; with
  // a fitted one the file leaves them out, ternary_row_offsets derives them).
  double bits_per_weight() const;
  int64_t nbytes() const;
};

// Encodes ternary codes (uint8 [rows, cols], values 0, 1, 2; any rows, cols >= 1) with
// per-row levels (float [rows, 2], rounded to bfloat16 here), in `fitted` (null: the
// reference dictionary).
TernaryMatrix ternary_encode(const at::Tensor& codes, const at::Tensor& levels,
                             std::shared_ptr<const TernaryDictionary> fitted = nullptr);

// Encodes a ternary weight matrix (float [rows, cols]): every row holds at most three
// distinct values after rounding to bfloat16, low <= 0 <= high. Zero is code 0 (whatever
// the levels); a row without negative (positive) values gets low (high) = 0.
TernaryMatrix ternary_encode_dense(const at::Tensor& weight,
                                   std::shared_ptr<const TernaryDictionary> fitted = nullptr);

// The pair probabilities of ternary codes (uint8 [rows, cols] each, values 0..2), paired
// as the encoder pairs them (a last odd column with a zero), each at least
// kMinPairProbability (then renormalized) so that every pair gets a short codeword: the
// probabilities make_ternary_dictionary fits a dictionary to.
constexpr double kMinPairProbability = 1e-3;
PairProbabilities fit_pair_probabilities(const std::vector<at::Tensor>& codes);

// The row offsets (int32 [rows + 1]) of a code stream whose rows each cover cols weights,
// found by walking the codewords; `what` names it in the error when the codes do not
// split into such rows.
at::Tensor ternary_row_offsets(const at::Tensor& codes, int64_t rows, int64_t cols,
                               const TernaryDictionary& dictionary, const std::string& what);

// The codes (uint8 [rows, cols]) and the weights (float [rows, cols]) back.
at::Tensor ternary_decode_codes(const TernaryMatrix& m);
at::Tensor ternary_decode(const TernaryMatrix& m);

// Checks that `m` is well formed (dtypes, shapes, offsets, and that every row's codewords
// cover exactly its columns); `what` names it in the error, e.g. "file x.qmoe: expert 3".
void check_ternary_matrix(const TernaryMatrix& m, const std::string& what);

}  // namespace strata::moe
