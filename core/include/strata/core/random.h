#pragma once
// One call that makes a run repeatable.

#include <cstdint>

namespace strata::core {

// Seeds LibTorch's default generators (CPU and, when present, CUDA). strata code that
// needs its own randomness takes an explicit at::Generator, so this is every global RNG.
void seed_everything(uint64_t seed);

}  // namespace strata::core
