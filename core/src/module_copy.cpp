#include "strata/core/module_copy.h"

#include <torch/utils.h>

#include "strata/core/error.h"
#include "strata/core/models/transformer_lm.h"

namespace strata::core {

torch::nn::AnyModule copy_layer(const torch::nn::AnyModule& layer, const std::string& name) {
  if (auto head = std::dynamic_pointer_cast<LMHeadImpl>(layer.ptr())) {
    torch::NoGradGuard no_grad;
    return torch::nn::AnyModule(LMHead(head->weight.detach().clone()));
  }
  torch::nn::AnyModule copy;
  try {
    copy = layer.clone();
  } catch (const c10::Error&) {
    STRATA_FAIL("layer '", name, "' (", layer.ptr()->name(),
                ") holds a weight tied across in-process pipeline ranks and cannot be copied: "
                "make it torch::nn::Cloneable, run the pipeline under mpirun (one rank per "
                "stage), or keep the tied layers in one stage (--balance)");
  }
  // A reset() that registers the tensor it was given again makes a clone that still
  // shares it (clone() then fills the shared tensor): no copy at all.
  const auto originals = layer.ptr()->named_parameters();
  for (const auto& p : copy.ptr()->named_parameters()) {
    const at::Tensor* original = originals.find(p.key());
    STRATA_CHECK(
        original == nullptr || original->unsafeGetTensorImpl() != p.value().unsafeGetTensorImpl(),
        "layer '", name, "' (", layer.ptr()->name(), "): its clone() shares parameter '", p.key(),
        "' with the original, expected a tensor of its own: make reset() "
        "register a new tensor");
  }
  return copy;
}

}  // namespace strata::core
