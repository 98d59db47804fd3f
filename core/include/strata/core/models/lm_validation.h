#pragma once
// The validation loss of a byte-level language model on a TextCorpus, over windows that
// are the same at every call: the windows examples/train_lm reports its validation loss
// on, so that tools scoring a trained model (strata-qmoe eval) give comparable figures.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

#include "strata/core/data/text_corpus.h"

namespace strata::core {

// The seed of the validation windows' generator: fixed, independent of any --seed, so that
// runs with different seeds compare too.
inline constexpr uint64_t kValidationSeed = 20240229;

// Mean lm_loss over `batches` batches of `batch` validation windows of `context` bytes,
// drawn with sample_batch(false, ...) from one generator seeded with kValidationSeed;
// logits_of maps inputs int64 [batch, context] to logits [batch, context, vocab].
double validation_loss(const TextCorpus& corpus, int64_t batches, int64_t batch, int64_t context,
                       const std::function<at::Tensor(const at::Tensor&)>& logits_of);

}  // namespace strata::core
