#include "strata/sparse/spgemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "common.h"

namespace strata::sparse {
namespace {

// Raw views of a CSR matrix's arrays.
struct CsrView {
  int64_t rows, cols;
  const int64_t* ptr;
  const int32_t* col;
  const float* val;
};

CsrView checked_view(const CsrSparse& m, const char* name) {
  STRATA_CHECK(m.row_ptr.defined() && m.row_ptr.dim() == 1 &&
                   m.row_ptr.numel() == m.out_features + 1 && m.row_ptr.scalar_type() == at::kLong,
               "spgemm: ", name, " is not a CSR matrix (row_ptr must be int64 [rows + 1])");
  STRATA_CHECK(m.col.defined() && m.values.defined() && m.col.scalar_type() == at::kInt &&
                   m.values.scalar_type() == at::kFloat && m.col.numel() == m.values.numel() &&
                   m.row_ptr[-1].item<int64_t>() == m.col.numel(),
               "spgemm: ", name, " is not a CSR matrix (col int32 and values float, nnz of each)");
  STRATA_CHECK(m.row_ptr.is_contiguous() && m.col.is_contiguous() && m.values.is_contiguous(),
               "spgemm: ", name, " arrays must be contiguous");
  return {m.out_features, m.in_features, m.row_ptr.data_ptr<int64_t>(), m.col.data_ptr<int32_t>(),
          m.values.data_ptr<float>()};
}

// Upper bound on the non-zeros of each row of C: bound_i = sum_k in row i of A nnz(B_k).
std::vector<int64_t> row_bounds(const CsrView& a, const CsrView& b) {
  std::vector<int64_t> bound(size_t(a.rows), 0);
  at::parallel_for(0, a.rows, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      int64_t s = 0;
      for (int64_t p = a.ptr[i]; p < a.ptr[i + 1]; ++p) {
        const int32_t k = a.col[p];
        s += b.ptr[k + 1] - b.ptr[k];
      }
      bound[size_t(i)] = s;
    }
  });
  return bound;
}

// Where a row's output goes in the numeric pass; the symbolic pass passes none.
struct RowOut {
  int32_t* col = nullptr;
  float* val = nullptr;
};

// One thread's accumulators, reused from row to row. Both remember which slots a row
// touched, so that clearing and collecting cost the row's output size, not the table's.
// Each row is merged twice: once to count its output (out.col == nullptr), once to
// write it, in order, straight into C's arrays; so no intermediate arrays are allocated.
class RowAccumulator {
 public:
  explicit RowAccumulator(int64_t cols) : cols_(cols) {}

  // Row i of C = A B in a hash table; returns its number of non-zeros.
  int64_t hash_row(const CsrView& a, const CsrView& b, int64_t i, int64_t bound, RowOut out) {
    size_t slots = 16;
    while (slots < size_t(2 * bound)) slots <<= 1;
    if (keys_.size() < slots) {
      keys_.assign(slots, -1);
      vals_.resize(slots);
    }
    const size_t mask = slots - 1;
    const bool numeric = out.col != nullptr;
    used_.clear();
    for (int64_t p = a.ptr[i]; p < a.ptr[i + 1]; ++p) {
      const int32_t k = a.col[p];
      const float av = a.val[p];
      for (int64_t q = b.ptr[k]; q < b.ptr[k + 1]; ++q) {
        const int32_t c = b.col[q];
        // Fibonacci hashing: the high bits of c * 2^64 / golden ratio spread neighbouring
        // columns (which sparse rows are full of) over the table.
        size_t h = size_t((uint64_t(uint32_t(c)) * 0x9E3779B97F4A7C15ull) >> 40) & mask;
        while (keys_[h] != c && keys_[h] != -1) h = (h + 1) & mask;
        if (keys_[h] == -1) {
          keys_[h] = c;
          if (numeric) vals_[h] = av * b.val[q];
          used_.push_back(uint32_t(h));
        } else if (numeric) {
          vals_[h] += av * b.val[q];
        }
      }
    }
    if (!numeric) {
      for (uint32_t h : used_) keys_[h] = -1;
      return int64_t(used_.size());
    }
    pairs_.clear();
    for (uint32_t h : used_) {
      pairs_.push_back((uint64_t(uint32_t(keys_[h])) << 32) | h);
      keys_[h] = -1;
    }
    std::sort(pairs_.begin(), pairs_.end());  // by column: the high 32 bits
    for (size_t n = 0; n < pairs_.size(); ++n) {
      out.col[n] = int32_t(pairs_[n] >> 32);
      out.val[n] = vals_[pairs_[n] & 0xffffffffu];
    }
    return int64_t(pairs_.size());
  }

  // Row i of C = A B in a dense array of C's width; returns its number of non-zeros.
  int64_t dense_row(const CsrView& a, const CsrView& b, int64_t i, RowOut out) {
    if (stamp_.empty()) {
      dense_.assign(size_t(cols_), 0.0f);
      stamp_.assign(size_t(cols_), -1);
    }
    const bool numeric = out.col != nullptr;
    // Local copies: the compiler cannot keep members in registers across the stores.
    const int64_t* b_ptr = b.ptr;
    const int32_t* b_col = b.col;
    const float* b_val = b.val;
    float* dense = dense_.data();
    int32_t* stamp = stamp_.data();
    // A column is touched in this row when its stamp is this row's: nothing to clear.
    const int32_t row_stamp = ++row_stamp_;
    used_.clear();
    for (int64_t p = a.ptr[i]; p < a.ptr[i + 1]; ++p) {
      const int32_t k = a.col[p];
      const float av = a.val[p];
      for (int64_t q = b_ptr[k], end = b_ptr[k + 1]; q < end; ++q) {
        const int32_t c = b_col[q];
        if (stamp[c] != row_stamp) {
          stamp[c] = row_stamp;
          if (numeric) dense[c] = av * b_val[q];
          used_.push_back(uint32_t(c));
        } else if (numeric) {
          dense[c] += av * b_val[q];
        }
      }
    }
    const int64_t count = int64_t(used_.size());
    if (!numeric || count == 0) return count;
    // Columns in order: sort the few touched ones, or scan all columns when many are.
    if (count * 16 < cols_) {
      std::sort(used_.begin(), used_.end());
    } else {
      used_.clear();
      for (int64_t c = 0; c < cols_; ++c)
        if (stamp[c] == row_stamp) used_.push_back(uint32_t(c));
    }
    for (size_t n = 0; n < used_.size(); ++n) {
      out.col[n] = int32_t(used_[n]);
      out.val[n] = dense[used_[n]];
    }
    return count;
  }

 private:
  int64_t cols_;
  std::vector<int32_t> keys_;
  std::vector<float> vals_;
  std::vector<uint32_t> used_;
  std::vector<uint64_t> pairs_;
  std::vector<float> dense_;
  std::vector<int32_t> stamp_;  // per column: the last row stamp that touched it
  int32_t row_stamp_ = -1;
};

// Row boundaries of `chunks` chunks of about equal work (bound + 1 per row).
std::vector<int64_t> balanced_chunks(const std::vector<int64_t>& bound, int64_t chunks) {
  const int64_t rows = int64_t(bound.size());
  int64_t total = 0;
  for (int64_t b : bound) total += b + 1;
  std::vector<int64_t> start{0};
  int64_t acc = 0;
  for (int64_t i = 0; i < rows; ++i) {
    acc += bound[size_t(i)] + 1;
    if (acc * chunks >= total * int64_t(start.size()) && int64_t(start.size()) < chunks &&
        i + 1 < rows)
      start.push_back(i + 1);
  }
  start.push_back(rows);
  return start;
}

}  // namespace

int64_t spgemm_multiply_adds(const CsrSparse& a, const CsrSparse& b) {
  const CsrView av = checked_view(a, "A"), bv = checked_view(b, "B");
  STRATA_CHECK(av.cols == bv.rows, "spgemm: A is ", av.rows, "x", av.cols, " but B is ", bv.rows,
               "x", bv.cols, " (inner sizes differ)");
  const std::vector<int64_t> bound = row_bounds(av, bv);
  return std::accumulate(bound.begin(), bound.end(), int64_t{0});
}

CsrSparse spgemm(const CsrSparse& a, const CsrSparse& b, const SpgemmOptions& options) {
  const CsrView av = checked_view(a, "A"), bv = checked_view(b, "B");
  STRATA_CHECK(av.cols == bv.rows, "spgemm: A is ", av.rows, "x", av.cols, " but B is ", bv.rows,
               "x", bv.cols, " (inner sizes differ)");
  STRATA_CHECK(options.dense_ratio() >= 1, "spgemm: dense_ratio ", options.dense_ratio(),
               ": expected at least 1");
  STRATA_CHECK(bv.cols <= std::numeric_limits<int32_t>::max(),
               "spgemm: B has too many columns for int32 indices");

  const std::vector<int64_t> bound = row_bounds(av, bv);
  const std::vector<int64_t> start = balanced_chunks(
      bound, std::max<int64_t>(1, std::min<int64_t>(av.rows, 8 * at::get_num_threads())));
  const int64_t chunks = int64_t(start.size()) - 1;
  // f(accumulator, i, dense) for every row with products, the rows split over the threads
  // in chunks of about equal work; dense: the row's accumulator choice.
  const auto for_each_row = [&](auto&& f) {
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      RowAccumulator acc(bv.cols);
      for (int64_t i = start[size_t(c0)]; i < start[size_t(c1)]; ++i) {
        const int64_t bnd = bound[size_t(i)];
        if (bnd == 0) continue;
        const bool dense = options.accumulator() == SpgemmAccumulator::Dense ||
                           (options.accumulator() == SpgemmAccumulator::Auto &&
                            bnd * options.dense_ratio() >= bv.cols);
        f(acc, i, dense);
      }
    });
  };

  const auto merge = [&](RowAccumulator& acc, int64_t i, bool dense, RowOut out) {
    return dense ? acc.dense_row(av, bv, i, out) : acc.hash_row(av, bv, i, bound[size_t(i)], out);
  };
  CsrSparse c;
  c.out_features = av.rows;
  c.in_features = bv.cols;
  c.row_ptr = at::zeros({av.rows + 1}, at::kLong);
  int64_t* ptr = c.row_ptr.data_ptr<int64_t>();
  int64_t total_bound = 0;
  for (int64_t b : bound) total_bound += b;
  if (total_bound * int64_t(sizeof(int32_t) + sizeof(float)) <= options.max_buffer_bytes()) {
    // One pass into a buffer with room for each row's bound, then the rows compacted.
    std::vector<int64_t> at_bound(size_t(av.rows) + 1, 0);
    for (int64_t i = 0; i < av.rows; ++i)
      at_bound[size_t(i) + 1] = at_bound[size_t(i)] + bound[size_t(i)];
    const at::Tensor buffer_col_t = at::empty({total_bound}, at::kInt);
    const at::Tensor buffer_val_t = at::empty({total_bound}, at::kFloat);
    int32_t* buffer_col = buffer_col_t.data_ptr<int32_t>();
    float* buffer_val = buffer_val_t.data_ptr<float>();
    for_each_row([&](RowAccumulator& acc, int64_t i, bool dense) {
      const int64_t at = at_bound[size_t(i)];
      ptr[i + 1] = merge(acc, i, dense, RowOut{buffer_col + at, buffer_val + at});
    });
    for (int64_t i = 0; i < av.rows; ++i) ptr[i + 1] += ptr[i];
    c.col = at::empty({ptr[av.rows]}, at::kInt);
    c.values = at::empty({ptr[av.rows]}, at::kFloat);
    int32_t* col = c.col.data_ptr<int32_t>();
    float* val = c.values.data_ptr<float>();
    at::parallel_for(0, av.rows, 1024, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const int64_t from = at_bound[size_t(i)], n = ptr[i + 1] - ptr[i];
        std::copy_n(buffer_col + from, n, col + ptr[i]);
        std::copy_n(buffer_val + from, n, val + ptr[i]);
      }
    });
    return c;
  }
  // Two passes when the bounds are too large to buffer: each row's size, then the rows
  // written in place.
  for_each_row([&](RowAccumulator& acc, int64_t i, bool dense) {
    ptr[i + 1] = merge(acc, i, dense, RowOut{});
  });
  for (int64_t i = 0; i < av.rows; ++i) ptr[i + 1] += ptr[i];
  c.col = at::empty({ptr[av.rows]}, at::kInt);
  c.values = at::empty({ptr[av.rows]}, at::kFloat);
  int32_t* col = c.col.data_ptr<int32_t>();
  float* val = c.values.data_ptr<float>();
  for_each_row([&](RowAccumulator& acc, int64_t i, bool dense) {
    merge(acc, i, dense, RowOut{col + ptr[i], val + ptr[i]});
  });
  return c;
}

CsrSparse csr_from_dense(const at::Tensor& dense) {
  const at::Tensor w = detail::checked_weight(dense, "csr_from_dense");
  return CsrSparse::from_dense(w, w != 0);
}

}  // namespace strata::sparse
