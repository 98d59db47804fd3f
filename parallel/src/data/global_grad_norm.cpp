#include "strata/parallel/data/global_grad_norm.h"

#include <torch/torch.h>

#include <cmath>

#include "strata/core/error.h"

namespace strata::parallel {

namespace {

constexpr int64_t kRow = 1024;

// The sum of the squares of `grad`'s elements, in double, without a double copy of the
// gradient (converting 24 MB costs more than the step's all-reduce): the norms of rows of
// kRow elements in float (each as exact as float allows), their squares summed in double.
at::Tensor sum_of_squares(const at::Tensor& grad) {
  const at::Tensor flat = grad.reshape({-1});
  const int64_t whole = flat.numel() / kRow * kRow;
  const at::ScalarType dtype = grad.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor sum =
      at::linalg_vector_norm(flat.slice(0, 0, whole).view({-1, kRow}), 2, at::IntArrayRef{1},
                             /*keepdim=*/false, dtype)
          .to(at::kDouble)
          .square()
          .sum();
  sum += flat.slice(0, whole).to(at::kDouble).square().sum();
  return sum.cpu();
}

}  // namespace

double global_grad_norm(const std::vector<GradientPart>& parts, Communicator& world) {
  torch::NoGradGuard no_grad;
  at::Tensor sum = at::zeros({1}, at::kDouble);
  for (const GradientPart& part : parts) {
    STRATA_CHECK(part.copies >= 1, "global gradient norm: a part held by ", part.copies,
                 " ranks, expected at least 1");
    at::Tensor squares = at::zeros({1}, at::kDouble);
    for (const at::Tensor& p : part.parameters) {
      const at::Tensor& grad = p.grad();
      if (grad.defined()) squares += sum_of_squares(grad);
    }
    sum += squares / part.copies;
  }
  if (world.size() > 1) world.allreduce(sum)->wait();
  // Rounding may leave a sum of non-negative squares a hair below 0.
  return std::sqrt(std::max(sum.item<double>(), 0.0));
}

void clip_gradients(const std::vector<at::Tensor>& parameters, double norm, double max_norm) {
  // As torch::nn::utils::clip_grad_norm_: the epsilon keeps a zero norm finite.
  const double coefficient = max_norm / (norm + 1e-6);
  if (max_norm <= 0 || coefficient >= 1) return;
  torch::NoGradGuard no_grad;
  for (const at::Tensor& p : parameters) {
    const at::Tensor& grad = p.grad();
    if (grad.defined()) grad.mul_(coefficient);
  }
}

}  // namespace strata::parallel
