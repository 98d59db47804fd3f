#pragma once
// A ternary weight matrix in QMoE's compressed form (IST-DASLab/qmoe, sub1.py): every row
// is encoded on its own with the fixed dictionary (ternary_dictionary.h), greedily taking
// the longest codeword that matches, and the rows' code streams are stored back to back.
// The tensors have the reference's dtypes and meaning, so data converts one to one to its
// Sub1Linear buffers (w_comp, row_off, ter_minmax).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace strata::moe {

struct TernaryMatrix {
  int64_t rows = 0, cols = 0;
  at::Tensor codes;        // int16 [n]: codewords (read as uint16), row after row
  at::Tensor row_offsets;  // int32 [rows + 1]: row r's codewords are codes[off[r], off[r+1])
  at::Tensor levels;       // bfloat16 [rows, 2]: the row's (low, high) values of codes 1, 2

  // Bits of the whole encoding (codes, offsets, levels) per weight.
  double bits_per_weight() const;
  int64_t nbytes() const;
};

// Encodes ternary codes (uint8 [rows, cols], values 0, 1, 2; any rows, cols >= 1) with
// per-row levels (float [rows, 2], rounded to bfloat16 here).
TernaryMatrix ternary_encode(const at::Tensor& codes, const at::Tensor& levels);

// Encodes a ternary weight matrix (float [rows, cols]): every row holds at most three
// distinct values after rounding to bfloat16, low <= 0 <= high. Zero is code 0 (whatever
// the levels); a row without negative (positive) values gets low (high) = 0.
TernaryMatrix ternary_encode_dense(const at::Tensor& weight);

// The codes (uint8 [rows, cols]) and the weights (float [rows, cols]) back.
at::Tensor ternary_decode_codes(const TernaryMatrix& m);
at::Tensor ternary_decode(const TernaryMatrix& m);

// Checks that `m` is well formed (dtypes, shapes, offsets, and that every row's codewords
// cover exactly its columns); `what` names it in the error, e.g. "file x.qmoe: expert 3".
void check_ternary_matrix(const TernaryMatrix& m, const std::string& what);

}  // namespace strata::moe
