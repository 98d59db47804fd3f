#include "strata/programs/compute_budget.h"

#include <torch/torch.h>

#include <utility>

#include "strata/core/error.h"

namespace strata::programs {

ComputeBudget::ComputeBudget(double budget_seconds, parallel::CommunicatorPtr world)
    : budget_(budget_seconds), world_(std::move(world)) {
  STRATA_CHECK(budget_seconds >= 0, "compute budget ", budget_seconds,
               " s, expected 0 (none) or more");
}

bool ComputeBudget::step_done(double step_seconds, const std::string& what) {
  ++steps_;
  if (!enabled()) return false;
  local_seconds_ += step_seconds;
  at::Tensor agreed = torch::tensor({local_seconds_}, at::kDouble);
  if (world_ && world_->size() > 1) world_->allreduce(agreed, parallel::ReduceOp::Max)->wait();
  const double seconds = agreed.item<double>();
  last_step_seconds_ = seconds - seconds_;
  seconds_ = seconds;
  STRATA_CHECK(steps_ > 1 || seconds_ <= budget_, "--compute-budget ", budget_,
               " s is less than one training step", what.empty() ? "" : " (" + what + ")",
               ", which took ", seconds_, " s; expected at least that");
  return seconds_ >= budget_;
}

}  // namespace strata::programs
