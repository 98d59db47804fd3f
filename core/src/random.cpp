#include "strata/core/random.h"

#include <torch/torch.h>

namespace strata::core {

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

}  // namespace strata::core
