#include "strata/core/models/lm_validation.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/core/models/transformer_lm.h"

namespace strata::core {

double validation_loss(const TextCorpus& corpus, int64_t batches, int64_t batch, int64_t context,
                       const std::function<at::Tensor(const at::Tensor&)>& logits_of) {
  STRATA_CHECK(batches >= 1, "validation batches ", batches, ", expected at least 1");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(kValidationSeed);
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    auto [inputs, targets] = corpus.sample_batch(false, batch, context, gen);
    sum += lm_loss(logits_of(inputs), targets).item<double>();
  }
  return sum / static_cast<double>(batches);
}

}  // namespace strata::core
