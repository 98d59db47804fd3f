// The boxed fallback: every op without an explicit device kernel runs its CPU kernel on
// CPU tensors that alias the device tensors' memory (device tensors live in host
// memory), and its results become device tensors over the same memory. No copies, so the
// device runs at about CPU speed (at::native::cpu_fallback would copy every argument to
// the CPU and every result back).
//
// - In-place and out= arguments (schema alias annotation with a write) are returned as
//   the original device tensor; if the CPU kernel resized one, the device tensor follows.
// - A result that aliases an argument (a view) is put on that argument's device storage.
// - A new result adopts the CPU storage: the device storage keeps it alive.
// - Device arguments (factories such as arange, randperm) are turned into the CPU; their
//   results go to the device named. New results go to the device of the first device
//   tensor argument, else the device argument, else the current device.

#include "internal.h"

namespace strata::accel::detail {
namespace {

struct Converted {
  AliasMap map;
  int index = -1;

  void note(const at::Tensor& t) {
    const int i = t.device().index();
    TORCH_CHECK(index < 0 || index == i, "accel device: an op got tensors on privateuseone:", index,
                " and privateuseone:", i, "; move them to one device first");
    index = i;
  }
  at::Tensor to_cpu(const at::Tensor& t) {
    if (!on_device(t)) return t;
    note(t);
    return map.cpu_alias(t);
  }
  // Lists: only rebuilt when they hold a device tensor.
  c10::IValue to_cpu_list(const c10::IValue& v) {
    c10::List<c10::IValue> list = v.toList();
    bool any = false;
    for (const c10::IValue& e : list) any = any || (e.isTensor() && on_device(e.toTensor()));
    if (!any) return v;
    c10::impl::GenericList out(list.elementType());
    out.reserve(list.size());
    for (const c10::IValue& e : list)
      out.push_back(e.isTensor() ? c10::IValue(to_cpu(e.toTensor())) : e);
    return out;
  }
  c10::IValue to_device(const c10::IValue& v) {
    if (v.isTensor()) return map.device_tensor(v.toTensor(), index);
    if (v.isTensorList()) {
      c10::List<at::Tensor> out;
      for (const at::Tensor& t : v.toTensorList()) out.push_back(map.device_tensor(t, index));
      return out;
    }
    if (v.isList()) {
      c10::List<c10::IValue> list = v.toList();
      c10::impl::GenericList out(list.elementType());
      for (const c10::IValue& e : list)
        out.push_back(e.isTensor() ? c10::IValue(map.device_tensor(e.toTensor(), index)) : e);
      return out;
    }
    return v;
  }
};

bool writes(const c10::Argument& a) { return a.alias_info() && a.alias_info()->isWrite(); }

// The argument a written return aliases (same alias set), or -1.
int written_argument(const c10::FunctionSchema& schema, const c10::Argument& ret) {
  const auto& args = schema.arguments();
  for (size_t i = 0; i < args.size(); ++i)
    if (writes(args[i]) && args[i].alias_info()->beforeSets() == ret.alias_info()->beforeSets())
      return int(i);
  return -1;
}

void collect_tensors(const c10::IValue& v, std::vector<at::Tensor>& out) {
  if (v.isTensor()) {
    if (v.toTensor().defined()) out.push_back(v.toTensor());
  } else if (v.isTensorList()) {
    for (const at::Tensor& t : v.toTensorList())
      if (t.defined()) out.push_back(t);
  } else if (v.isList()) {
    for (const c10::IValue& e : v.toList()) collect_tensors(e, out);
  }
}

// int, int[], SymInt, SymInt[] and their optionals; not Scalar (alpha, beta), which boxes
// as an int too when it holds one.
bool is_int_argument(const c10::Argument& a) {
  c10::TypePtr t = a.type();
  if (auto opt = t->cast<c10::OptionalType>()) t = opt->getElementType();
  if (auto list = t->cast<c10::ListType>()) t = list->getElementType();
  return t->kind() == c10::TypeKind::IntType || t->kind() == c10::TypeKind::SymIntType;
}

void collect_ints(const c10::IValue& v, std::vector<std::vector<int64_t>>& out) {
  if (v.isIntList())
    out.push_back(v.toIntVector());
  else if (v.isInt())
    out.push_back({v.toInt()});
}

}  // namespace

void boxed_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const auto& args = schema.arguments();
  const auto& rets = schema.returns();
  const size_t first_arg = stack->size() - args.size();
  const bool record = recording();

  // The device arguments, kept for in-place and out= returns and for the recorder.
  std::vector<c10::IValue> originals(stack->begin() + first_arg, stack->end());
  std::vector<at::Tensor> written_cpu(args.size());
  Converted conv;
  for (size_t i = 0; i < args.size(); ++i) {
    c10::IValue& v = (*stack)[first_arg + i];
    if (v.isTensor()) {
      v = conv.to_cpu(v.toTensor());
      if (writes(args[i])) written_cpu[i] = v.toTensor();
    } else if (v.isList()) {
      v = conv.to_cpu_list(v);
    } else if (v.isDevice() && v.toDevice().type() == kDeviceType) {
      if (conv.index < 0) conv.index = factory_index(v.toDevice());
      v = c10::IValue(c10::Device(c10::kCPU));
    }
  }
  if (conv.index < 0) conv.index = current_device();

  op.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::CPU), stack);

  for (size_t i = 0; i < args.size(); ++i)
    if (written_cpu[i].defined() && on_device(originals[i].toTensor()))
      conv.map.sync_back(originals[i].toTensor(), written_cpu[i]);

  const size_t first_ret = stack->size() - rets.size();
  bool view = !rets.empty();
  for (size_t j = 0; j < rets.size(); ++j) {
    c10::IValue& r = (*stack)[first_ret + j];
    const auto* alias = rets[j].alias_info();
    view = view && alias && !alias->isWrite();
    const int arg = alias && alias->isWrite() ? written_argument(schema, rets[j]) : -1;
    r = arg >= 0 ? originals[size_t(arg)] : conv.to_device(r);
  }

  if (record && schema.name() == "aten::_local_scalar_dense") {
    // tensor.item(): one element read back to the host.
    const at::Tensor& t = originals[0].toTensor();
    report_transfer({conv.index, -1, int64_t(t.element_size())});
    return;
  }
  // Views are not compute: not reported.
  if (record && !view) {
    std::vector<at::Tensor> outputs;
    std::vector<std::vector<int64_t>> ints;
    for (size_t j = first_ret; j < stack->size(); ++j) collect_tensors((*stack)[j], outputs);
    for (size_t i = 0; i < args.size(); ++i)
      if (is_int_argument(args[i])) collect_ints(originals[i], ints);
    std::vector<at::Tensor> inputs;
    for (const auto& v : originals) collect_tensors(v, inputs);
    report_op(schema.name(), conv.index, inputs, outputs, std::move(ints));
  }
}

// LibTorch gives every backend without a kernel of its own the op's
// CompositeExplicitAutograd(NonFunctional) kernel, and that takes precedence over a
// backend fallback. For an op that also has a CPU kernel the device would then compute
// otherwise than the CPU: native_layer_norm's composite goes through batch norm (not the
// same bits), and structured ops (add, mm, relu...) would run as empty + their out=
// variant (two dispatches, a resize). Registering the fallback as the device kernel of
// those ops makes the device run exactly the CPU kernel.
void route_to_cpu_kernels(torch::Library& aten) {
  auto& dispatcher = c10::Dispatcher::singleton();
  for (const c10::OperatorName& name : dispatcher.getAllOpNames()) {
    auto op = dispatcher.findOp(name);
    if (!op || !op->hasSchema() || name.name.rfind("aten::", 0) != 0) continue;
    if (!op->hasKernelForDispatchKey(c10::DispatchKey::CPU) ||
        op->hasKernelForDispatchKey(c10::DispatchKey::PrivateUse1))
      continue;
    if (!op->hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutograd) &&
        !op->hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutogradNonFunctional))
      continue;
    const std::string full =
        name.overload_name.empty() ? name.name : name.name + "." + name.overload_name;
    aten.impl(full.c_str(), torch::CppFunction::makeFromBoxedFunction<&boxed_fallback>());
  }
}

}  // namespace strata::accel::detail
