#pragma once
// AdamW with each parameter's update made in one pass over its memory (issue 22, "The
// Transformer step"; docs/precision.md). torch::optim::AdamW updates a parameter with
// about eight tensor ops (decay, two moment updates, sqrt, divide, add, addcdiv), each a
// pass over the parameter, its gradient or its moments; FusedAdamW reads the parameter,
// the gradient and both moments once and writes them once, in one loop split over the
// intra-op threads.
//
// It IS a torch::optim::AdamW: the same options, the same per-parameter state
// (AdamWParamState: exp_avg, exp_avg_sq, step), so checkpoints (save_checkpoint,
// load_checkpoint) and everything that takes an AdamW take it, and a checkpoint written
// with one resumes with the other. The numbers equal torch::optim::AdamW's within float
// rounding (the same formula in the same order, in float).
//
// Parameters the loop does not handle (not fp32, not contiguous, not on the CPU, sparse
// gradients, amsgrad) are stepped by torch::optim::AdamW's own code.

#include <torch/optim/adamw.h>

namespace strata::core {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  at::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace strata::core
