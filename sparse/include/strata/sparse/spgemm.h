#pragma once
// Sparse x sparse: C = A B with A [rows, inner], B [inner, cols] and C in compressed sparse
// rows (CsrSparse; out_features = rows, in_features = columns).
//
//   CsrSparse c = strata::sparse::spgemm(a, b);
//
// Row-wise (Gustavson): row i of C is the sum over the non-zeros a_ik of a_ik times row k
// of B. The partial products of a row are merged as they are produced (SMASH), in one of
// two accumulators chosen per row from the row's bound on its output size,
// bound_i = sum over k in row i of A of nnz(row k of B):
//   hash   an open-addressing table of 2^ceil(log2(2 bound)) slots, then the few columns
//          it holds sorted; cheap when bound is small next to the number of columns;
//   dense  one float and one row stamp per column of C (a column is touched in this row
//          when its stamp is the row's, so nothing is cleared), the touched columns sorted,
//          or all columns scanned when they are many; cheap while C's width fits in cache.
// Rows are split over LibTorch's intra-op threads in chunks of about equal work (sum of
// bounds); each thread keeps its own accumulators. Each row is merged once into a buffer
// with room for its bound, then the rows are compacted into C; when that buffer would be
// too large (options.max_buffer_bytes) each row is merged twice instead, once to count its
// output and once to write it in place.
//
// Structural non-zeros: an entry of C is stored when some product reaches it, also when
// the products cancel to 0.0 (as torch.sparse and most SpGEMM libraries do).

#include <torch/arg.h>
#include "strata/sparse/formats.h"

#include <cstdint>

namespace strata::sparse {

enum class SpgemmAccumulator { Auto, Hash, Dense };

struct SpgemmOptions {
  // Auto picks per row: dense when bound_i * dense_ratio >= the number of columns of C
  // (the hash accumulator was slower on every matrix measured: docs/benchmarks.md).
  TORCH_ARG(SpgemmAccumulator, accumulator) = SpgemmAccumulator::Auto;
  TORCH_ARG(int64_t, dense_ratio) = 64;
  // One pass into a buffer of sum_i bound_i entries, then compaction, when that buffer
  // takes at most this many bytes; else two passes (count each row, then write it).
  TORCH_ARG(int64_t, max_buffer_bytes) = int64_t{256} << 20;
};

CsrSparse spgemm(const CsrSparse& a, const CsrSparse& b, const SpgemmOptions& options = {});

// Multiply-adds C = A B performs: sum over rows of A of bound_i (for MFLOP/s: 2 x this).
int64_t spgemm_multiply_adds(const CsrSparse& a, const CsrSparse& b);

// A CSR matrix of any values (no mask): every non-zero of the dense matrix is stored.
CsrSparse csr_from_dense(const at::Tensor& dense);

}  // namespace strata::sparse
