#pragma once
// Internal to checkpoint.cpp: dtype names of the manifest, and reading and writing the
// per-parameter state of the optimizers checkpoints understand, as named tensors
// ("momentum_buffer", "exp_avg", ...).

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>

namespace strata::core::detail {

// "float32", "int64", ...: the names NumPy and PyTorch users read without a table.
std::string dtype_name(at::ScalarType dtype);
std::optional<at::ScalarType> dtype_from_name(const std::string& name);

enum class OptimizerKind { SGD, Adam, AdamW };

// The kind of `optimizer`; any other optimizer type is a strata::Error naming it.
OptimizerKind optimizer_kind(const torch::optim::Optimizer& optimizer);
const char* optimizer_kind_name(OptimizerKind kind);

using StateFields = std::map<std::string, at::Tensor>;

// The state of parameter `param` as named tensors; empty when the optimizer has none yet
// (before its first step). Adam's integer step becomes an int64 scalar tensor.
StateFields get_param_state(const torch::optim::Optimizer& optimizer, OptimizerKind kind,
                            const at::Tensor& param);

// Throws unless `fields` is a complete state of `kind` for parameter `name` of shape
// `param`: the right field names, shapes and dtypes. Called before anything is modified.
void check_param_state(OptimizerKind kind, const std::string& name, const at::Tensor& param,
                       const StateFields& fields);

// Replaces the optimizer's state of `param` by `fields` (already checked).
void set_param_state(torch::optim::Optimizer& optimizer, OptimizerKind kind,
                     const at::Tensor& param, const StateFields& fields);

}  // namespace strata::core::detail
