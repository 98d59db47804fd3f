#include "checkpoint_detail.h"

#include <c10/util/Type.h>

#include <algorithm>
#include <sstream>
#include <type_traits>

#include "strata/core/error.h"

namespace strata::core::detail {
namespace {

using StateMap = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;
using StateKey = typename StateMap::key_type;

// The optimizer state map's key for a parameter. LibTorch 1.13 keys by the TensorImpl
// address printed as a string (c10::guts::to_string, an ostringstream of the pointer),
// 2.x by the address itself. A template, so only the branch that fits is compiled.
template <typename Key>
Key state_key(const at::Tensor& param) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream out;
    out << param.unsafeGetTensorImpl();
    return out.str();
  } else {
    return static_cast<Key>(param.unsafeGetTensorImpl());
  }
}

const torch::optim::OptimizerParamState* find_state(const torch::optim::Optimizer& optimizer,
                                                    const at::Tensor& param) {
  const auto& state = optimizer.state();
  const auto it = state.find(state_key<StateKey>(param));
  return it == state.end() ? nullptr : it->second.get();
}

template <typename AdamState>
StateFields adam_fields(const torch::optim::OptimizerParamState* base) {
  const auto& state = dynamic_cast<const AdamState&>(*base);
  StateFields fields{{"exp_avg", state.exp_avg()},
                     {"exp_avg_sq", state.exp_avg_sq()},
                     {"step", at::scalar_tensor(state.step(), at::kLong)}};
  if (state.max_exp_avg_sq().defined()) fields["max_exp_avg_sq"] = state.max_exp_avg_sq();
  return fields;
}

template <typename AdamState>
std::unique_ptr<torch::optim::OptimizerParamState> make_adam_state(const StateFields& fields) {
  auto state = std::make_unique<AdamState>();
  state->step(fields.at("step").item<int64_t>());
  state->exp_avg(fields.at("exp_avg"));
  state->exp_avg_sq(fields.at("exp_avg_sq"));
  if (fields.count("max_exp_avg_sq")) state->max_exp_avg_sq(fields.at("max_exp_avg_sq"));
  return state;
}

constexpr std::pair<at::ScalarType, const char*> kDtypes[] = {
    {at::kFloat, "float32"},     {at::kDouble, "float64"}, {at::kHalf, "float16"},
    {at::kBFloat16, "bfloat16"}, {at::kLong, "int64"},     {at::kInt, "int32"},
    {at::kShort, "int16"},       {at::kChar, "int8"},      {at::kByte, "uint8"},
    {at::kBool, "bool"}};

}  // namespace

std::string dtype_name(at::ScalarType dtype) {
  for (const auto& [type, name] : kDtypes) {
    if (type == dtype) return name;
  }
  STRATA_FAIL("checkpoint: dtype ", dtype,
              " is not supported, expected one of float32, float64, "
              "float16, bfloat16, int64, int32, int16, int8, uint8, bool");
}

std::optional<at::ScalarType> dtype_from_name(const std::string& name) {
  for (const auto& [type, type_name] : kDtypes) {
    if (name == type_name) return type;
  }
  return std::nullopt;
}

OptimizerKind optimizer_kind(const torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return OptimizerKind::SGD;
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return OptimizerKind::Adam;
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return OptimizerKind::AdamW;
  STRATA_FAIL("checkpoint: optimizer type ", c10::demangle(typeid(optimizer).name()),
              " is not supported, expected torch::optim::SGD, Adam or AdamW");
}

const char* optimizer_kind_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::SGD: return "SGD";
    case OptimizerKind::Adam: return "Adam";
    case OptimizerKind::AdamW: return "AdamW";
  }
  return "?";
}

StateFields get_param_state(const torch::optim::Optimizer& optimizer, OptimizerKind kind,
                            const at::Tensor& param) {
  const torch::optim::OptimizerParamState* state = find_state(optimizer, param);
  if (state == nullptr) return {};
  switch (kind) {
    case OptimizerKind::SGD: {
      const auto& sgd = dynamic_cast<const torch::optim::SGDParamState&>(*state);
      if (!sgd.momentum_buffer().defined()) return {};
      return {{"momentum_buffer", sgd.momentum_buffer()}};
    }
    case OptimizerKind::Adam: return adam_fields<torch::optim::AdamParamState>(state);
    case OptimizerKind::AdamW: return adam_fields<torch::optim::AdamWParamState>(state);
  }
  return {};
}

void check_param_state(OptimizerKind kind, const std::string& name, const at::Tensor& param,
                       const StateFields& fields) {
  const char* kind_name = optimizer_kind_name(kind);
  const std::vector<std::string> required =
      kind == OptimizerKind::SGD ? std::vector<std::string>{"momentum_buffer"}
                                 : std::vector<std::string>{"exp_avg", "exp_avg_sq", "step"};
  for (const std::string& field : required) {
    STRATA_CHECK(fields.count(field), "checkpoint: ", kind_name, " state of parameter '", name,
                 "' lacks '", field, "'");
  }
  for (const auto& [field, tensor] : fields) {
    const bool known = std::find(required.begin(), required.end(), field) != required.end() ||
                       (kind != OptimizerKind::SGD && field == "max_exp_avg_sq");
    STRATA_CHECK(known, "checkpoint: tensor 'optimizer/", name, "/", field, "' is not part of ",
                 kind_name, " state (saved with another optimizer?)");
    if (field == "step") {
      STRATA_CHECK(tensor.dim() == 0 && tensor.scalar_type() == at::kLong,
                   "checkpoint: tensor 'optimizer/", name, "/step': shape ", tensor.sizes(),
                   " dtype ", dtype_name(tensor.scalar_type()), ", expected an int64 scalar");
      // Adam divides by 1 - beta^step: a negative count gives wrong steps, not an error.
      STRATA_CHECK(tensor.item<int64_t>() >= 0, "checkpoint: tensor 'optimizer/", name,
                   "/step' holds ", tensor.item<int64_t>(), ", expected a step count >= 0");
      continue;
    }
    STRATA_CHECK(tensor.sizes() == param.sizes(), "optimizer state 'optimizer/", name, "/", field,
                 "': shape ", tensor.sizes(), " in checkpoint, ", param.sizes(), " in the model");
    STRATA_CHECK(tensor.scalar_type() == param.scalar_type(), "optimizer state 'optimizer/", name,
                 "/", field, "': dtype ", dtype_name(tensor.scalar_type()), " in checkpoint, ",
                 dtype_name(param.scalar_type()), " in the model");
  }
}

void set_param_state(torch::optim::Optimizer& optimizer, OptimizerKind kind,
                     const at::Tensor& param, const StateFields& fields) {
  // State lives where the parameter lives, as the optimizer itself would create it.
  StateFields placed;
  for (const auto& [field, tensor] : fields) {
    placed[field] = field == "step" ? tensor : tensor.to(param.device());
  }
  std::unique_ptr<torch::optim::OptimizerParamState> state;
  switch (kind) {
    case OptimizerKind::SGD: {
      auto sgd = std::make_unique<torch::optim::SGDParamState>();
      sgd->momentum_buffer(placed.at("momentum_buffer"));
      state = std::move(sgd);
      break;
    }
    case OptimizerKind::Adam: state = make_adam_state<torch::optim::AdamParamState>(placed); break;
    case OptimizerKind::AdamW:
      state = make_adam_state<torch::optim::AdamWParamState>(placed);
      break;
  }
  optimizer.state()[state_key<StateKey>(param)] = std::move(state);
}

}  // namespace strata::core::detail
