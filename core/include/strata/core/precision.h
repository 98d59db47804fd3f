#pragma once
// Mixed precision: the compute precision of a training run, and the scope that turns it on.
//
// With Precision::Bf16 the parameters stay fp32 (the master weights the optimizer steps
// and checkpoints hold); inside an AutocastScope LibTorch's CPU autocast runs the matrix
// products (linear, matmul, bmm, conv) in bf16 and keeps the reductions that need range
// (layer_norm, cross_entropy) in fp32. Weights are cast to bf16 once and the cast reused
// by every micro-batch until clear_cast_cache(), which a training step calls once per
// optimizer step, so casts are not redone per use. Precision::Fp16 is CUDA's autocast in
// fp16 and needs dynamic loss scaling (LossScaler); it exists only in CUDA builds.
//
//   strata::core::clear_cast_cache();          // the weights changed: cast them again
//   {
//     strata::core::AutocastScope autocast(strata::core::Precision::Bf16);
//     loss = loss_fn(strata::core::to_full_precision(model->forward(x)), y);
//   }
//   loss.backward();                            // gradients reach the fp32 parameters

#include <ATen/ATen.h>

#include <string>

namespace strata::core {

enum class Precision { Fp32, Bf16, Fp16 };

// "fp32", "bf16", "fp16".
std::string to_string(Precision precision);
// The inverse of to_string; anything else is a strata::Error naming `what` (a flag).
Precision precision_from_string(const std::string& text, const std::string& what = "precision");
// The dtype the matrix products run in: kFloat, kBFloat16 or kHalf.
at::ScalarType compute_dtype(Precision precision);
// A floating dtype of `dtype`'s name: "fp32" -> kFloat, "bf16" -> kBFloat16, "fp16" -> kHalf.
at::ScalarType dtype_from_string(const std::string& text, const std::string& what = "dtype");

// Autocast in `precision` on this thread for the scope's life (nothing for Fp32), and
// the previous state back at its end. Casts of fp32 leaf parameters are cached only
// while gradients are recorded: a cast made under no_grad has no autograd history, and
// reused by a later forward with gradients it would silently cut the weights' gradients.
class AutocastScope {
 public:
  explicit AutocastScope(Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cpu_enabled_ = false, gpu_enabled_ = false, cache_enabled_ = true;
  at::ScalarType cpu_dtype_ = at::kBFloat16;
};

// Drops the cached low-precision casts of the weights; call after each optimizer step
// (and after loading weights), so that the next forward casts the new values.
void clear_cast_cache();

// `t` in fp32 if it is a bf16 or fp16 tensor, else `t` itself: the loss and the softmax
// run in fp32 whatever the compute precision.
at::Tensor to_full_precision(const at::Tensor& t);

}  // namespace strata::core
