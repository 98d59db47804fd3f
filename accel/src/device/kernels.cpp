// The explicit kernels of the device: factories, copies, views and storage ops, and
// convolution (which LibTorch routes to convolution_overrideable on an unknown device).
// Everything else goes to the boxed fallback (fallback.cpp).

#include <ATen/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/resize_native.h>
#include <ATen/ops/set_native.h>
#include <ATen/ops/view_native.h>

#include "internal.h"
#include "strata/accel/device_allocator.h"

namespace strata::accel::detail {
namespace {

constexpr c10::DispatchKeySet kDeviceKeys(c10::DispatchKey::PrivateUse1);

void check_strided(const c10::optional<c10::Layout>& layout) {
  TORCH_CHECK(!layout || *layout == c10::kStrided, "accel device: only strided tensors, got ",
              *layout);
}

at::Tensor empty_memory_format(at::IntArrayRef size, c10::optional<at::ScalarType> dtype,
                               c10::optional<at::Layout> layout, c10::optional<at::Device> device,
                               c10::optional<bool> pin_memory,
                               c10::optional<at::MemoryFormat> memory_format) {
  check_strided(layout);
  return at::detail::empty_generic(size, device_allocator(factory_index(device)), kDeviceKeys,
                                   c10::dtype_or_default(dtype), memory_format);
}

at::Tensor empty_strided(at::IntArrayRef size, at::IntArrayRef stride,
                         c10::optional<at::ScalarType> dtype, c10::optional<at::Layout> layout,
                         c10::optional<at::Device> device, c10::optional<bool> pin_memory) {
  check_strided(layout);
  return at::detail::empty_strided_generic(size, stride, device_allocator(factory_index(device)),
                                           kDeviceKeys, c10::dtype_or_default(dtype));
}

int index_or_cpu(const at::Tensor& t) { return on_device(t) ? t.device().index() : -1; }

// Every copy that involves the device comes here (copy_ sends a copy to _copy_from when
// either side is not a CPU or CUDA tensor). The CPU copy kernel does the work (dtype
// conversion, broadcasting, strides) on CPU views of both sides.
at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool non_blocking) {
  AliasMap map;
  const at::Tensor src_cpu = on_device(self) ? map.cpu_alias(self) : self;
  const at::Tensor dst_cpu = on_device(dst) ? map.cpu_alias(dst) : dst;
  dst_cpu.copy_(src_cpu, non_blocking);
  if (recording()) {
    const int from = index_or_cpu(self), to = index_or_cpu(dst);
    if (from != to)
      report_transfer({from, to, int64_t(dst.numel()) * int64_t(dst.element_size())});
    else
      report_op("aten::copy_", to, {self}, {dst}, {});
  }
  return dst;
}

at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst) {
  if (on_device(dst))
    at::native::resize_(dst, self.sizes());
  else
    dst.resize_(self.sizes());
  return copy_from(self, dst, false);
}

at::Tensor convolution(const at::Tensor& input, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                       at::IntArrayRef output_padding, int64_t groups) {
  AliasMap map;
  const bool has_bias = bias && bias->defined();
  // The CPU convolution picks the same algorithm as a CPU model would: same bits.
  at::Tensor out_cpu = at::convolution(map.cpu_alias(input), map.cpu_alias(weight),
                                       has_bias ? map.cpu_alias(*bias) : at::Tensor(), stride,
                                       padding, dilation, transposed, output_padding, groups);
  const int index = input.device().index();
  at::Tensor out = map.device_tensor(out_cpu, index);
  if (recording()) {
    std::vector<at::Tensor> inputs{input, weight};
    if (has_bias) inputs.push_back(*bias);
    report_op("aten::convolution", index, inputs, {out},
              {stride.vec(), padding.vec(), dilation.vec(), output_padding.vec(), {groups}});
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
    at::IntArrayRef output_padding, int64_t groups, std::array<bool, 3> output_mask) {
  AliasMap map;
  // The bias gradient from the CPU backend too (not a separate sum here): the same bits as
  // a CPU model.
  const std::vector<int64_t> bias_size{transposed ? weight.size(1) * groups : weight.size(0)};
  at::OptionalIntArrayRef bias_sizes;
  if (output_mask[2]) bias_sizes = at::IntArrayRef(bias_size);
  auto grads = at::convolution_backward(map.cpu_alias(grad_output), map.cpu_alias(input),
                                        map.cpu_alias(weight), bias_sizes, stride, padding,
                                        dilation, transposed, output_padding, groups, output_mask);
  const int index = input.device().index();
  at::Tensor gi = map.device_tensor(std::get<0>(grads), index);
  at::Tensor gw = map.device_tensor(std::get<1>(grads), index);
  at::Tensor gb = map.device_tensor(std::get<2>(grads), index);
  if (recording()) {
    std::vector<at::Tensor> outputs;
    for (const auto& g : {gi, gw, gb})
      if (g.defined()) outputs.push_back(g);
    report_op("aten::convolution_backward", index, {grad_output, input, weight}, outputs,
              {stride.vec(), padding.vec(), dilation.vec(), output_padding.vec(), {groups}});
  }
  return {gi, gw, gb};
}

at::Tensor& set_storage(at::Tensor& self, at::Storage source) {
  return at::native::set_(self, std::move(source));
}

at::Tensor& set_storage_offset(at::Tensor& self, at::Storage source, int64_t offset,
                               at::IntArrayRef size, at::IntArrayRef stride) {
  return at::native::set_storage_cpu_(self, std::move(source), offset, size, stride);
}

}  // namespace

void register_kernels(torch::Library& m) {
  m.impl("empty.memory_format", TORCH_FN(empty_memory_format));
  m.impl("empty_strided", TORCH_FN(empty_strided));
  m.impl("_copy_from", TORCH_FN(copy_from));
  m.impl("_copy_from_and_resize", TORCH_FN(copy_from_and_resize));
  // Views and storage ops: LibTorch's own device-independent implementations, which
  // alias the storage (TensorImpl over the same Storage) and resize through the
  // storage's allocator (ours).
  m.impl("as_strided", TORCH_FN(at::native::as_strided_tensorimpl));
  m.impl("view", TORCH_FN(at::native::view));
  m.impl("_reshape_alias", TORCH_FN(at::native::_reshape_alias));
  m.impl("resize_", TORCH_FN(at::native::resize_));
  m.impl("set_.source_Storage", TORCH_FN(set_storage));
  m.impl("set_.source_Storage_storage_offset", TORCH_FN(set_storage_offset));
  m.impl("convolution_overrideable", TORCH_FN(convolution));
  m.impl("convolution_backward_overrideable", TORCH_FN(convolution_backward));
}

}  // namespace strata::accel::detail
