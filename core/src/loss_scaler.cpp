#include "strata/core/loss_scaler.h"

#include "strata/core/error.h"

namespace strata::core {

LossScaler::LossScaler(LossScalerOptions options)
    : options_(options), scale_(options.init_scale()) {
  STRATA_CHECK(options_.init_scale() > 0, "loss scaler init_scale ", options_.init_scale(),
               ", expected above 0");
  STRATA_CHECK(options_.growth_factor() > 1, "loss scaler growth_factor ", options_.growth_factor(),
               ", expected above 1");
  STRATA_CHECK(options_.backoff_factor() > 0 && options_.backoff_factor() < 1,
               "loss scaler backoff_factor ", options_.backoff_factor(), ", expected in (0, 1)");
  STRATA_CHECK(options_.growth_interval() >= 1, "loss scaler growth_interval ",
               options_.growth_interval(), ", expected at least 1");
}

at::Tensor LossScaler::scale_loss(const at::Tensor& loss) const { return loss * scale_; }

bool LossScaler::unscale(const std::vector<at::Tensor>& parameters) const {
  // One flag on the gradients' device, read once: no host sync per parameter.
  at::Tensor finite;
  const double inverse = 1.0 / scale_;
  for (const at::Tensor& p : parameters) {
    const at::Tensor& grad = p.grad();
    if (!grad.defined()) continue;
    const at::Tensor all_finite = at::isfinite(grad).all();
    finite = finite.defined() ? finite.logical_and(all_finite) : all_finite;
    grad.mul_(inverse);
  }
  return !finite.defined() || finite.item<bool>();
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= options_.backoff_factor();
    finite_steps_ = 0;
    return;
  }
  if (++finite_steps_ >= options_.growth_interval()) {
    scale_ *= options_.growth_factor();
    finite_steps_ = 0;
  }
}

}  // namespace strata::core
