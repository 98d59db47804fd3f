#include "strata/programs/precision_flags.h"

#include "strata/core/precision.h"
#include "strata/programs/cli.h"

namespace strata::programs {

void add_precision_flags(CLI::App& app, parallel::HybridParallelOptions& options) {
  parallel::PipelineParallelOptions& pipeline = options.pipeline();
  // fp16 is CUDA's and needs loss scaling: not offered by CPU programs.
  add_enum_option(app, "--precision", pipeline.precision(),
                  {{"fp32", core::Precision::Fp32}, {"bf16", core::Precision::Bf16}},
                  "Compute precision: bf16 runs the matrix products in bf16 with fp32 master "
                  "weights, optimizer state, loss and softmax");
  // The options hold a dtype, or none for the compute precision's.
  app.add_option_function<std::string>(
         "--grad-reduce-dtype",
         [&pipeline](const std::string& name) {
           if (name == "auto")
             pipeline.grad_reduce_dtype(c10::nullopt);
           else
             pipeline.grad_reduce_dtype(core::dtype_from_string(name, "--grad-reduce-dtype"));
         },
         "Dtype of the data-parallel gradient all-reduce: auto is the --precision's; bf16 "
         "sends half the bytes and rounds the sum to bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->default_str("auto");
}

}  // namespace strata::programs
