#include "strata/moe/ternary_codec.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "strata/core/error.h"
#include "strata/moe/ternary_dictionary.h"

namespace strata::moe {

double TernaryMatrix::bits_per_weight() const {
  return 8.0 * static_cast<double>(nbytes()) / static_cast<double>(rows * cols);
}

int64_t TernaryMatrix::nbytes() const {
  return static_cast<int64_t>(codes.nbytes() + (fitted ? 0 : row_offsets.nbytes()) +
                              levels.nbytes());
}

TernaryMatrix ternary_encode(const at::Tensor& codes_in, const at::Tensor& levels,
                             std::shared_ptr<const TernaryDictionary> fitted) {
  STRATA_CHECK(codes_in.dim() == 2 && codes_in.size(0) >= 1 && codes_in.size(1) >= 1,
               "ternary_encode: codes of shape ", codes_in.sizes(), ", expected [rows, cols] >= 1");
  const int64_t rows = codes_in.size(0), cols = codes_in.size(1);
  STRATA_CHECK(levels.sizes() == at::IntArrayRef({rows, 2}), "ternary_encode: levels of shape ",
               levels.sizes(), ", expected [", rows, ", 2]");
  const at::Tensor codes = codes_in.to(at::kByte).contiguous();
  STRATA_CHECK(codes.max().item<int>() <= 2, "ternary_encode: a code above 2");
  const TernaryDictionary& dict = fitted ? *fitted : ternary_dictionary();

  // The reference's greedy walk (Sub1PreparePack): follow the trie pair by pair; when the
  // run cannot grow, emit the codeword reached and restart from the root with this pair.
  // A last odd column pairs with a zero.
  std::vector<uint16_t> stream;
  stream.reserve(static_cast<size_t>(rows * cols / 16 + rows));
  at::Tensor offsets = at::empty({rows + 1}, at::kInt);
  int32_t* off = offsets.data_ptr<int32_t>();
  off[0] = 0;
  const uint8_t* c = codes.data_ptr<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = c + r * cols;
    int32_t node = kTernaryTrieRoot;
    for (int64_t k = 0; k < cols; k += 2) {
      const int pair = row[k] + 3 * (k + 1 < cols ? row[k + 1] : 0);
      int32_t next = dict.trie[9 * int64_t(node) + pair];
      if (next == -1) {
        stream.push_back(static_cast<uint16_t>(node));
        next = dict.trie[9 * int64_t(kTernaryTrieRoot) + pair];
      }
      node = next;
    }
    stream.push_back(static_cast<uint16_t>(node));
    STRATA_CHECK(stream.size() <= size_t(INT32_MAX), "ternary_encode: more than 2^31 codewords");
    off[r + 1] = static_cast<int32_t>(stream.size());
  }

  TernaryMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.codes = at::empty({static_cast<int64_t>(stream.size())}, at::kShort);
  std::memcpy(m.codes.data_ptr(), stream.data(), stream.size() * sizeof(uint16_t));
  m.row_offsets = offsets;
  m.levels = levels.to(at::kFloat).to(at::kBFloat16).contiguous();
  m.fitted = std::move(fitted);
  return m;
}

TernaryMatrix ternary_encode_dense(const at::Tensor& weight,
                                   std::shared_ptr<const TernaryDictionary> fitted) {
  STRATA_CHECK(weight.dim() == 2, "ternary_encode_dense: weight of shape ", weight.sizes(),
               ", expected [rows, cols]");
  // The reference rounds to bfloat16 first and takes the row's min and max as the levels.
  const at::Tensor w = weight.detach().to(at::kFloat).to(at::kBFloat16).to(at::kFloat);
  const at::Tensor zero = at::zeros({w.size(0)});
  const at::Tensor low = at::minimum(std::get<0>(w.min(1)), zero);
  const at::Tensor high = at::maximum(std::get<0>(w.max(1)), zero);
  const at::Tensor is_low = (w == low.unsqueeze(1)) & (w != 0);
  const at::Tensor is_high = (w == high.unsqueeze(1)) & (w != 0);
  const at::Tensor bad = ~(is_low | is_high | (w == 0));
  if (bad.any().item<bool>()) {
    const int64_t row = bad.any(1).nonzero()[0].item<int64_t>();
    STRATA_FAIL("ternary_encode_dense: row ", row, " holds values other than 0, ",
                low[row].item<float>(), " and ", high[row].item<float>(), ": not ternary");
  }
  const at::Tensor codes = is_low.to(at::kByte) + 2 * is_high.to(at::kByte);
  return ternary_encode(codes, at::stack({low, high}, 1), std::move(fitted));
}

at::Tensor ternary_decode_codes(const TernaryMatrix& m) {
  check_ternary_matrix(m, "ternary_decode");
  const TernaryDictionary& dict = m.dictionary();
  // A row's last codeword may run past the last column (the zero the odd column was
  // paired with): decode into a padded row and cut.
  at::Tensor padded = at::zeros({m.rows, m.cols + kMaxDigitsPerCodeword}, at::kByte);
  uint8_t* out = padded.data_ptr<uint8_t>();
  const uint16_t* codes = reinterpret_cast<const uint16_t*>(m.codes.data_ptr<int16_t>());
  const int32_t* off = m.row_offsets.data_ptr<int32_t>();
  const int64_t stride = padded.size(1);
  for (int64_t r = 0; r < m.rows; ++r) {
    int64_t column = 0;
    for (int32_t i = off[r]; i < off[r + 1]; ++i) {
      const int digits = 2 * dict.pairs(codes[i]);
      for (int k = 0; k < digits; ++k)
        out[r * stride + column + k] = uint8_t(dict.digit(codes[i], k));
      column += digits;
    }
  }
  return padded.narrow(1, 0, m.cols).contiguous();
}

at::Tensor ternary_decode(const TernaryMatrix& m) {
  const at::Tensor codes = ternary_decode_codes(m).to(at::kLong);
  // Value of code c in row r: 0, low or high.
  const at::Tensor table = at::cat({at::zeros({m.rows, 1}), m.levels.to(at::kFloat)}, 1);
  return table.gather(1, codes);
}

void check_ternary_matrix(const TernaryMatrix& m, const std::string& what) {
  STRATA_CHECK(m.rows >= 1 && m.cols >= 1, what, ": shape [", m.rows, ", ", m.cols,
               "], expected rows and cols >= 1");
  STRATA_CHECK(m.codes.defined() && m.codes.scalar_type() == at::kShort && m.codes.dim() == 1 &&
                   m.codes.is_contiguous(),
               what, ": codes must be a contiguous int16 vector");
  STRATA_CHECK(m.row_offsets.defined() && m.row_offsets.scalar_type() == at::kInt &&
                   m.row_offsets.sizes() == at::IntArrayRef({m.rows + 1}) &&
                   m.row_offsets.is_contiguous(),
               what, ": row offsets must be a contiguous int32 vector of ", m.rows + 1);
  STRATA_CHECK(m.levels.defined() && m.levels.scalar_type() == at::kBFloat16 &&
                   m.levels.sizes() == at::IntArrayRef({m.rows, 2}) && m.levels.is_contiguous(),
               what, ": levels must be a contiguous bfloat16 [", m.rows, ", 2] tensor");
  const TernaryDictionary& dict = m.dictionary();
  const uint16_t* codes = reinterpret_cast<const uint16_t*>(m.codes.data_ptr<int16_t>());
  const int32_t* off = m.row_offsets.data_ptr<int32_t>();
  STRATA_CHECK(off[0] == 0 && off[m.rows] == m.codes.size(0), what, ": row offsets span [", off[0],
               ", ", off[m.rows], "], expected [0, ", m.codes.size(0), "]");
  // Greedy encoding covers ceil(cols / 2) pairs per row, exactly.
  const int64_t pairs_per_row = (m.cols + 1) / 2;
  for (int64_t r = 0; r < m.rows; ++r) {
    // Within bounds before any code is read (the fuzzer found offsets that rise past the
    // end and come back down to it).
    STRATA_CHECK(off[r] <= off[r + 1] && off[r + 1] <= m.codes.size(0), what,
                 ": row offsets decrease or pass the ", m.codes.size(0), " codes at row ", r);
    int64_t pairs = 0;
    for (int32_t i = off[r]; i < off[r + 1]; ++i) pairs += dict.pairs(codes[i]);
    STRATA_CHECK(pairs == pairs_per_row, what, ": row ", r, " decodes to ", 2 * pairs,
                 " weights, expected ", 2 * pairs_per_row, " (", m.cols, " columns)");
  }
}

PairProbabilities fit_pair_probabilities(const std::vector<at::Tensor>& codes) {
  std::array<int64_t, 9> counts{};
  int64_t total = 0;
  for (const at::Tensor& c : codes) {
    STRATA_CHECK(c.dim() == 2 && c.size(1) >= 1, "fit_pair_probabilities: codes of shape ",
                 c.sizes(), ", expected [rows, cols]");
    const at::Tensor padded =
        c.size(1) % 2 == 0 ? c.to(at::kLong) : at::constant_pad_nd(c.to(at::kLong), {0, 1});
    const at::Tensor pairs = padded.reshape({-1, 2});
    const at::Tensor r = pairs.select(1, 0) + 3 * pairs.select(1, 1);
    STRATA_CHECK(r.numel() == 0 || (r.min().item<int64_t>() >= 0 && r.max().item<int64_t>() <= 8),
                 "fit_pair_probabilities: a code outside 0..2");
    const at::Tensor histogram = at::bincount(r, {}, 9);
    for (int k = 0; k < 9; ++k) counts[k] += histogram[k].item<int64_t>();
    total += r.numel();
  }
  STRATA_CHECK(total > 0, "fit_pair_probabilities: no codes");
  PairProbabilities p{};
  double sum = 0;
  for (int k = 0; k < 9; ++k) {
    p[k] = std::max(kMinPairProbability, double(counts[k]) / double(total));
    sum += p[k];
  }
  for (double& v : p) v /= sum;
  return p;
}

at::Tensor ternary_row_offsets(const at::Tensor& codes_in, int64_t rows, int64_t cols,
                               const TernaryDictionary& dictionary, const std::string& what) {
  STRATA_CHECK(codes_in.defined() && codes_in.scalar_type() == at::kShort && codes_in.dim() == 1,
               what, ": codes must be an int16 vector");
  STRATA_CHECK(rows >= 1 && cols >= 1, what, ": shape [", rows, ", ", cols,
               "], expected rows and cols >= 1");
  const at::Tensor codes_c = codes_in.contiguous();
  const uint16_t* codes = reinterpret_cast<const uint16_t*>(codes_c.data_ptr<int16_t>());
  const int64_t n = codes_c.size(0), pairs_per_row = (cols + 1) / 2;
  STRATA_CHECK(n <= INT32_MAX, what, ": ", n, " codewords, expected at most 2^31 - 1");
  at::Tensor offsets = at::empty({rows + 1}, at::kInt);
  int32_t* off = offsets.data_ptr<int32_t>();
  off[0] = 0;
  int64_t i = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t pairs = 0;
    while (pairs < pairs_per_row && i < n) pairs += dictionary.pairs(codes[i++]);
    STRATA_CHECK(pairs == pairs_per_row, what, ": row ", r, " decodes to ", 2 * pairs,
                 " weights, expected ", 2 * pairs_per_row, " (", cols, " columns)");
    off[r + 1] = static_cast<int32_t>(i);
  }
  STRATA_CHECK(i == n, what, ": ", n - i, " codewords past the last row");
  return offsets;
}

}  // namespace strata::moe
