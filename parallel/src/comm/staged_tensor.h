#pragma once
// Contiguous stand-ins for caller tensors, for backends whose libraries (MPI, NCCL) read
// and write flat buffers. Private to the module.

#include <ATen/ATen.h>

namespace strata::parallel::detail {

// A contiguous tensor the library reads or writes in place of the caller's. When the
// caller's tensor is not contiguous, `target` is it, and the result is copied back into it
// when the operation completes.
struct StagedTensor {
  at::Tensor buffer;
  at::Tensor target;

  void copy_back() const {
    if (target.defined()) target.copy_(buffer);
  }
};

// `keep_contents`: the operation reads the tensor too (an in-place reduction, the root of a
// broadcast); otherwise a non-contiguous tensor gets a fresh buffer, not a copy.
inline StagedTensor stage(const at::Tensor& tensor, bool keep_contents) {
  if (tensor.is_contiguous()) return {tensor, {}};
  return {keep_contents ? tensor.contiguous() : at::empty(tensor.sizes(), tensor.options()),
          tensor};
}

}  // namespace strata::parallel::detail
