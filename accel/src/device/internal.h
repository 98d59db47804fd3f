#pragma once
// What the pieces of the device share (not installed; accel/src/device only).

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/Storage.h>
#include <torch/library.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "strata/accel/op_recorder.h"

namespace strata::accel::detail {

constexpr c10::DeviceType kDeviceType = c10::DeviceType::PrivateUse1;

// The context of every device DataPtr: what the deleter needs for the memory statistics,
// the owning layer (set by to_device) and, for memory adopted from a CPU result of the
// fallback, the CPU storage that owns it.
struct StorageContext {
  void* data = nullptr;
  int device = 0;
  size_t nbytes = 0;
  std::shared_ptr<const std::string> layer;
  c10::Storage adopted;  // defined: the memory belongs to this CPU storage
};

// The context of a device DataPtr, or nullptr when the DataPtr is not one of ours.
StorageContext* context_of(const c10::DataPtr& data_ptr);
// A device DataPtr over the memory of a CPU storage, keeping that storage alive: a CPU
// result becomes a device tensor without a copy.
c10::DataPtr adopt_cpu_storage(const c10::Storage& cpu, int device);

int current_device();
// `index` if it names a device, else a c10::Error (TORCH_CHECK: it comes from LibTorch).
int checked_index(int index);
// The device index a factory kernel should use: the one given, or the current device.
int factory_index(const c10::optional<c10::Device>& device);
inline bool on_device(const at::Tensor& t) {
  return t.defined() && t.device().type() == kDeviceType;
}

// Pairs each device storage with one CPU storage over the same memory, for the length of
// one kernel call: CPU views of a device tensor share one CPU storage, and a CPU result
// that aliases it (a view) maps back onto the device storage instead of adopting memory.
class AliasMap {
 public:
  // A CPU tensor over the same memory, sizes, strides and offset as device tensor `t`.
  at::Tensor cpu_alias(const at::Tensor& t);
  // The device tensor for a CPU result: on the paired device storage when it aliases one,
  // else adopting the CPU storage on device `index`. Non-CPU and undefined pass through.
  at::Tensor device_tensor(const at::Tensor& cpu, int index);
  // Makes device tensor `dev` match its CPU alias `cpu` after an in-place or out= op that
  // may have resized or re-pointed it.
  void sync_back(const at::Tensor& dev, const at::Tensor& cpu);

 private:
  c10::Storage device_storage(const c10::Storage& cpu, int index);
  struct Pair {
    c10::StorageImpl* device;
    c10::Storage device_storage;
    c10::Storage cpu_storage;
  };
  std::vector<Pair> pairs_;
};

// Recording.
extern std::atomic<bool> g_recording;
inline bool recording() { return g_recording.load(std::memory_order_relaxed); }
// Reports an op that device `device` ran on these defined tensors (the layer attributed
// from the inputs); call it only when recording().
void report_op(const std::string& name, int device, const std::vector<at::Tensor>& inputs,
               const std::vector<at::Tensor>& outputs, std::vector<std::vector<int64_t>> int_args);
void report_transfer(const DeviceTransfer& transfer);
// The layer of an op with these device inputs (LayerScope, else a tagged storage among
// them, else the last attributed layer of this thread); updates the thread's state.
std::string attribute_layer(const std::vector<at::Tensor>& inputs);

void register_kernels(torch::Library& aten);
// Sends to the boxed fallback the ops whose CPU kernel a CompositeExplicitAutograd kernel
// would otherwise shadow on the device (see fallback.cpp).
void route_to_cpu_kernels(torch::Library& aten);
void boxed_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack);

}  // namespace strata::accel::detail
