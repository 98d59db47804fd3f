#pragma once
// Dynamic loss scaling for fp16 mixed precision (Precision::Fp16, CUDA builds), after
// torch.cuda.amp.GradScaler: fp16 has 5 exponent bits, so small gradients flush to zero
// unless the loss is scaled up before backward. The scale starts high, halves whenever a
// step's gradients overflow (that step is skipped), and doubles after growth_interval
// steps without overflow. bf16 has fp32's exponent range and needs none of this.
//
//   strata::core::LossScaler scaler;
//   scaler.scale_loss(loss).backward();
//   const bool finite = scaler.unscale(parameters);   // gradients / scale, all finite?
//   if (finite) optimizer.step();
//   scaler.update(finite);
//
// Written with device-generic ATen ops, so it compiles (and its tests run) without CUDA.

#include <torch/arg.h>

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace strata::core {

struct LossScalerOptions {
  TORCH_ARG(double, init_scale) = 65536.0;
  TORCH_ARG(double, growth_factor) = 2.0;
  TORCH_ARG(double, backoff_factor) = 0.5;
  TORCH_ARG(int64_t, growth_interval) = 2000;
};

class LossScaler {
 public:
  // Options out of range (a scale or growth factor not above 0 and 1, a backoff factor
  // outside (0, 1), an interval below 1) are a strata::Error naming the field.
  explicit LossScaler(LossScalerOptions options = {});

  double scale() const { return scale_; }
  // `loss` times the scale: call backward() on this.
  at::Tensor scale_loss(const at::Tensor& loss) const;
  // Divides every defined gradient of `parameters` by the scale, in place; true when every
  // one is finite (the optimizer may step), false when any is inf or NaN.
  bool unscale(const std::vector<at::Tensor>& parameters) const;
  // After each step, with unscale's answer: halves the scale (by backoff_factor) on an
  // overflow, multiplies it by growth_factor after growth_interval finite steps in a row.
  void update(bool finite);

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t finite_steps_ = 0;
};

}  // namespace strata::core
