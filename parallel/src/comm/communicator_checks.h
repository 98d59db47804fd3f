#pragma once
// Argument checks every backend runs before it touches a tensor, so that the same mistake
// raises the same strata::Error whichever backend is underneath. Private to the module:
// backends include it, users do not.

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel::detail {

// "[4, 3]", for messages.
std::string shape_string(at::IntArrayRef shape);

void check_defined(const at::Tensor& tensor, const char* what);
// A peer rank of a point-to-point operation or a broadcast root: 0 <= peer < size.
void check_peer(int peer, int size, const char* what);
// A message tag: >= 0 (MPI reserves negative tags).
void check_tag(int tag, const char* what);
// Avg needs a floating (or complex) dtype; Max and Min need an ordered one.
void check_reduce_op(at::ScalarType dtype, ReduceOp op, const char* what);
void check_same_dtype(const at::Tensor& seen, const at::Tensor& expected, const char* what,
                      const char* expected_name);

// output has shape [size, *input.sizes()] and input's dtype.
void check_allgather(const at::Tensor& input, const at::Tensor& output, int size);
// input has shape [size, *output.sizes()] and output's dtype; op fits the dtype.
void check_reduce_scatter(const at::Tensor& input, const at::Tensor& output, int size, ReduceOp op);

// Where each rank's rows lie in an alltoall's input and output, in rows of dim 0.
struct AlltoallLayout {
  std::vector<int64_t> send_rows, send_offsets;  // per destination rank
  std::vector<int64_t> recv_rows, recv_offsets;  // per source rank
  int64_t row_numel = 0;                         // elements in one row (a dim 0 slice)
};
// Resolves empty splits to equal ones and checks: one split per rank, non-negative,
// summing to dim 0 of input (send) and output (recv); same dtype and row shape.
AlltoallLayout check_alltoall(const at::Tensor& input, const at::Tensor& output,
                              const std::vector<int64_t>& send_splits,
                              const std::vector<int64_t>& recv_splits, int size);

// A received message must fill the receiver's tensor exactly.
void check_received_numel(int64_t got, int64_t expected, int src, int tag);

}  // namespace strata::parallel::detail
