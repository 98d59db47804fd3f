#include "strata/core/fused_optimizer.h"

#include <ATen/Parallel.h>
#include <c10/util/string_utils.h>

#include <cmath>

namespace strata::core {

namespace {

bool fusable(const at::Tensor& p, const torch::optim::AdamWOptions& options) {
  const at::Tensor& grad = p.grad();
  return !options.amsgrad() && p.device().is_cpu() && p.scalar_type() == at::kFloat &&
         p.is_contiguous() && !grad.is_sparse() && grad.scalar_type() == at::kFloat &&
         grad.is_contiguous() && grad.device().is_cpu();
}

// One parameter's AdamW update, torch::optim::AdamW's ops in their order, per element.
struct AdamWUpdate {
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bias_correction2, eps,
      step_size;

  void operator()(float* p, const float* g, float* m, float* v, int64_t n) const {
    // Grains of 32K floats: a parameter this size is worth another thread.
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float mi = m[i] * beta1 + one_minus_beta1 * g[i];
        const float vi = v[i] * beta2 + one_minus_beta2 * (g[i] * g[i]);
        m[i] = mi;
        v[i] = vi;
        const float denom = std::sqrt(vi) / sqrt_bias_correction2 + eps;
        p[i] = p[i] * decay + -step_size * (mi / denom);
      }
    });
  }
};

}  // namespace

at::Tensor FusedAdamW::step(LossClosure closure) {
  for (const auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    for (const at::Tensor& p : group.params()) {
      if (p.grad().defined() && !fusable(p, options)) return torch::optim::AdamW::step(closure);
    }
  }
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    const auto [beta1, beta2] = options.betas();
    for (at::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      // The state as torch::optim::AdamW makes it (its key, its fields), so that the two
      // and the checkpoints share it.
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state().find(key);
      if (it == state().end()) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Contiguous));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Contiguous));
        it = state().emplace(key, std::move(fresh)).first;
      }
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      // A loaded checkpoint's moments may not be contiguous fp32: make them so once.
      if (!s.exp_avg().is_contiguous() || s.exp_avg().scalar_type() != at::kFloat)
        s.exp_avg(s.exp_avg().to(at::kFloat).contiguous());
      if (!s.exp_avg_sq().is_contiguous() || s.exp_avg_sq().scalar_type() != at::kFloat)
        s.exp_avg_sq(s.exp_avg_sq().to(at::kFloat).contiguous());
      s.step(s.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, s.step());
      const double bias_correction2 = 1 - std::pow(beta2, s.step());
      const AdamWUpdate update{static_cast<float>(1 - options.lr() * options.weight_decay()),
                               static_cast<float>(beta1),
                               static_cast<float>(1 - beta1),
                               static_cast<float>(beta2),
                               static_cast<float>(1 - beta2),
                               static_cast<float>(std::sqrt(bias_correction2)),
                               static_cast<float>(options.eps()),
                               static_cast<float>(options.lr() / bias_correction1)};
      update(p.data_ptr<float>(), p.grad().data_ptr<float>(), s.exp_avg().data_ptr<float>(),
             s.exp_avg_sq().data_ptr<float>(), p.numel());
    }
  }
  return loss;
}

}  // namespace strata::core
