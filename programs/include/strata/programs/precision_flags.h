#pragma once
// The mixed-precision flags of the training programs, bound to the HybridParallel options
// (docs/precision.md): --precision fp32|bf16 and --grad-reduce-dtype auto|fp32|bf16.

#include <CLI/CLI.hpp>

#include "strata/parallel/data/hybrid_parallel.h"

namespace strata::programs {

// --precision (options.pipeline().precision()) and --grad-reduce-dtype
// (options.pipeline().grad_reduce_dtype()); both act with or without a pipeline.
void add_precision_flags(CLI::App& app, parallel::HybridParallelOptions& options);

}  // namespace strata::programs
