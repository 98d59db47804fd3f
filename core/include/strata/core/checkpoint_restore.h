#pragma once
// Loading checkpoint contents held in memory (checkpoint.h's CheckpointContents), apart from
// checkpoint.h so that the many files reading checkpoints do not rebuild for it.

#include "strata/core/checkpoint.h"

namespace strata::core {

// The in-memory counterpart of load_checkpoint, for a model whose parts move between
// ranks while it trains (a pipeline re-partitioned in place): every parameter and buffer
// of `model` is copied from the tensor of its name in `contents` (strata::Error naming the
// first one missing or of another shape, before anything is modified), and `optimizer`,
// when not null, gets the state `contents` holds for its parameters ("optimizer/<name>/
// <field>"; a parameter without any has none). Tensors for other parameters are ignored.
void restore_checkpoint_contents(const CheckpointContents& contents, torch::nn::Module& model,
                                 torch::optim::Optimizer* optimizer);

}  // namespace strata::core
