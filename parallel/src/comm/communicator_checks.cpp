#include "communicator_checks.h"

#include <numeric>
#include <sstream>

#include "strata/core/error.h"

namespace strata::parallel::detail {

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

void check_defined(const at::Tensor& tensor, const char* what) {
  STRATA_CHECK(tensor.defined(), what, ": got an undefined tensor, expected a defined one");
}

void check_peer(int peer, int size, const char* what) {
  STRATA_CHECK(peer >= 0 && peer < size, what, ": got ", peer, ", expected a rank in [0, ", size,
               ")");
}

void check_tag(int tag, const char* what) {
  STRATA_CHECK(tag >= 0, what, " tag: got ", tag, ", expected >= 0");
}

void check_reduce_op(at::ScalarType dtype, ReduceOp op, const char* what) {
  if (op == ReduceOp::Avg) {
    STRATA_CHECK(at::isFloatingType(dtype) || at::isComplexType(dtype), what,
                 " avg needs a floating dtype, got ", c10::toString(dtype));
  }
  if (op == ReduceOp::Max || op == ReduceOp::Min) {
    STRATA_CHECK(!at::isComplexType(dtype), what, " ", to_string(op),
                 " needs an ordered dtype, got ", c10::toString(dtype));
  }
}

void check_same_dtype(const at::Tensor& seen, const at::Tensor& expected, const char* what,
                      const char* expected_name) {
  STRATA_CHECK(seen.scalar_type() == expected.scalar_type(), what, " dtype: got ",
               c10::toString(seen.scalar_type()), ", expected ",
               c10::toString(expected.scalar_type()), " (", expected_name, "'s)");
}

namespace {

// [size, *inner]
std::vector<int64_t> stacked_shape(int size, at::IntArrayRef inner) {
  std::vector<int64_t> shape{size};
  shape.insert(shape.end(), inner.begin(), inner.end());
  return shape;
}

void check_shape(at::IntArrayRef seen, at::IntArrayRef expected, const char* what) {
  STRATA_CHECK(seen.equals(expected), what, " shape: got ", shape_string(seen), ", expected ",
               shape_string(expected));
}

// Equal splits when `splits` is empty; otherwise one non-negative split per rank that
// sums to `rows`.
std::vector<int64_t> resolve_splits(const std::vector<int64_t>& splits, int64_t rows, int size,
                                    const char* what, const char* tensor_name) {
  if (splits.empty()) {
    STRATA_CHECK(rows % size == 0, "alltoall ", tensor_name, " dim 0: got ", rows,
                 ", expected a multiple of the ", size, " ranks (", what,
                 " is empty, which means equal splits)");
    return std::vector<int64_t>(size, rows / size);
  }
  STRATA_CHECK(static_cast<int64_t>(splits.size()) == size, "alltoall ", what, ": got ",
               splits.size(), " entries, expected ", size, " (one per rank)");
  for (size_t r = 0; r < splits.size(); ++r) {
    STRATA_CHECK(splits[r] >= 0, "alltoall ", what, "[", r, "]: got ", splits[r],
                 ", expected >= 0");
  }
  int64_t sum = std::accumulate(splits.begin(), splits.end(), int64_t{0});
  STRATA_CHECK(sum == rows, "alltoall ", what, ": sum ", sum, ", expected ", rows, " (dim 0 of ",
               tensor_name, ")");
  return splits;
}

std::vector<int64_t> prefix_sums(const std::vector<int64_t>& rows) {
  std::vector<int64_t> offsets(rows.size());
  std::exclusive_scan(rows.begin(), rows.end(), offsets.begin(), int64_t{0});
  return offsets;
}

}  // namespace

void check_allgather(const at::Tensor& input, const at::Tensor& output, int size) {
  check_defined(input, "allgather input");
  check_defined(output, "allgather output");
  check_same_dtype(output, input, "allgather output", "the input");
  check_shape(output.sizes(), stacked_shape(size, input.sizes()), "allgather output");
}

void check_reduce_scatter(const at::Tensor& input, const at::Tensor& output, int size,
                          ReduceOp op) {
  check_defined(input, "reduce_scatter input");
  check_defined(output, "reduce_scatter output");
  check_same_dtype(input, output, "reduce_scatter input", "the output");
  check_shape(input.sizes(), stacked_shape(size, output.sizes()), "reduce_scatter input");
  check_reduce_op(output.scalar_type(), op, "reduce_scatter");
}

AlltoallLayout check_alltoall(const at::Tensor& input, const at::Tensor& output,
                              const std::vector<int64_t>& send_splits,
                              const std::vector<int64_t>& recv_splits, int size) {
  check_defined(input, "alltoall input");
  check_defined(output, "alltoall output");
  STRATA_CHECK(input.dim() >= 1, "alltoall input: got a 0-dim tensor, expected at least 1 dim");
  STRATA_CHECK(output.dim() >= 1, "alltoall output: got a 0-dim tensor, expected at least 1 dim");
  check_same_dtype(output, input, "alltoall output", "the input");
  check_shape(output.sizes().slice(1), input.sizes().slice(1), "alltoall output row");
  AlltoallLayout layout;
  layout.row_numel = 1;
  for (int64_t d : input.sizes().slice(1)) layout.row_numel *= d;
  layout.send_rows = resolve_splits(send_splits, input.size(0), size, "send_splits", "input");
  layout.recv_rows = resolve_splits(recv_splits, output.size(0), size, "recv_splits", "output");
  layout.send_offsets = prefix_sums(layout.send_rows);
  layout.recv_offsets = prefix_sums(layout.recv_rows);
  return layout;
}

void check_received_numel(int64_t got, int64_t expected, int src, int tag) {
  STRATA_CHECK(got == expected, "recv from rank ", src, " (tag ", tag, "): got ", got,
               " elements, expected ", expected, " (the receiving tensor's numel)");
}

}  // namespace strata::parallel::detail
