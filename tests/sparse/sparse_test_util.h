#pragma once
// Shared helpers of the sparse tests: random weights with empty rows and columns, the
// dense reference product, error expectations.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include "strata/core/error.h"

#include <string>

namespace strata::sparse::testing {

// A weight [out, in] with entries in [-1, 1] and no zeros (so masks decide the pattern).
inline at::Tensor random_weight(int64_t out, int64_t in, uint64_t seed) {
  torch::manual_seed(seed);
  const at::Tensor w = at::rand({out, in}) * 2 - 1;
  return at::where(w == 0, at::full_like(w, 0.5), w);
}

// A random unstructured mask at `sparsity`, with output row 1 and input column 2 empty.
inline at::Tensor random_mask(int64_t out, int64_t in, double sparsity, uint64_t seed) {
  torch::manual_seed(seed + 1);
  at::Tensor m = at::rand({out, in}) >= sparsity;
  if (out > 1) m.select(0, 1).fill_(false);
  if (in > 2) m.select(1, 2).fill_(false);
  return m;
}

// max |y - ref| <= tol * max(|ref|), with ref computed in double; exact when ref is 0.
inline void expect_close(const at::Tensor& y, const at::Tensor& ref, double tol,
                         const std::string& what) {
  ASSERT_EQ(y.sizes(), ref.sizes()) << what;
  const at::Tensor r = ref.to(at::kDouble);
  const double err = (y.to(at::kDouble) - r).abs().max().item<double>();
  const double scale = r.numel() ? r.abs().max().item<double>() : 0.0;
  EXPECT_LE(err, tol * scale) << what << ": max error " << err << " against max |ref| " << scale;
}

// x [tokens, in] * dense^T in double.
inline at::Tensor reference(const at::Tensor& x, const at::Tensor& dense) {
  return x.to(at::kDouble).matmul(dense.to(at::kDouble).t());
}

// Expects `body` to throw strata::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& body, const std::string& needle) {
  try {
    body();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const strata::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Restores LibTorch's intra-op threads at the end of a test.
struct ThreadsGuard {
  int saved = at::get_num_threads();
  ~ThreadsGuard() { at::set_num_threads(saved); }
};

}  // namespace strata::sparse::testing
