// CPU tensors over device memory and device tensors over CPU results, without copies:
// device tensors live in host memory, so a CPU kernel can run on them directly.

#include <c10/core/CPUAllocator.h>
#include <c10/util/intrusive_ptr.h>

#include "internal.h"
#include "strata/accel/device_allocator.h"

namespace strata::accel::detail {
namespace {

// A CPU DataPtr over a device storage's memory holds a reference to that storage.
void release_device_storage(void* ctx) {
  c10::raw::intrusive_ptr::decref(static_cast<c10::StorageImpl*>(ctx));
}

at::Tensor make_tensor(c10::Storage storage, c10::DispatchKey key, const at::Tensor& like) {
  auto t = at::detail::make_tensor<c10::TensorImpl>(std::move(storage), c10::DispatchKeySet(key),
                                                    like.dtype());
  auto* impl = t.unsafeGetTensorImpl();
  impl->set_sizes_and_strides(like.sizes(), like.strides());
  impl->set_storage_offset(like.storage_offset());
  return t;
}

bool same_geometry(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.storage_offset() == b.storage_offset();
}

}  // namespace

at::Tensor AliasMap::cpu_alias(const at::Tensor& t) {
  c10::StorageImpl* dev = t.storage().unsafeGetStorageImpl();
  for (const auto& p : pairs_)
    if (p.device == dev) return make_tensor(p.cpu_storage, c10::DispatchKey::CPU, t);
  c10::raw::intrusive_ptr::incref(dev);
  c10::DataPtr data(dev->data(), dev, &release_device_storage, c10::Device(c10::kCPU));
  // Resizable with the CPU allocator: an out= kernel may resize its output; sync_back
  // then moves the device tensor onto the new memory.
  c10::Storage cpu(c10::Storage::use_byte_size_t(), dev->nbytes(), std::move(data),
                   c10::GetCPUAllocator(), /*resizable=*/true);
  pairs_.push_back({dev, t.storage(), cpu});
  return make_tensor(std::move(cpu), c10::DispatchKey::CPU, t);
}

c10::Storage AliasMap::device_storage(const c10::Storage& cpu, int index) {
  c10::StorageImpl* impl = cpu.unsafeGetStorageImpl();
  for (auto& p : pairs_) {
    if (p.cpu_storage.unsafeGetStorageImpl() != impl) continue;
    if (impl->data() != p.device_storage.data() || impl->nbytes() != p.device_storage.nbytes()) {
      // A kernel resized the CPU alias (new memory): the device storage, and every device
      // tensor sharing it, moves onto that memory, as a resize on a real device would.
      auto* dev = p.device_storage.unsafeGetStorageImpl();
      const int device = p.device_storage.device().index();
      dev->set_data_ptr_noswap(adopt_cpu_storage(cpu, device));
      dev->set_nbytes(impl->nbytes());
    }
    return p.device_storage;
  }
  c10::Storage dev(c10::Storage::use_byte_size_t(), impl->nbytes(), adopt_cpu_storage(cpu, index),
                   device_allocator(index), /*resizable=*/true);
  pairs_.push_back({dev.unsafeGetStorageImpl(), dev, cpu});
  return dev;
}

at::Tensor AliasMap::device_tensor(const at::Tensor& cpu, int index) {
  if (!cpu.defined() || cpu.device().type() != c10::kCPU) return cpu;
  TORCH_CHECK(cpu.layout() == c10::kStrided && cpu.has_storage(),
              "accel device: the CPU kernel returned a ", cpu.layout(),
              " tensor; only strided tensors can live on the device");
  return make_tensor(device_storage(cpu.storage(), index), c10::DispatchKey::PrivateUse1, cpu);
}

void AliasMap::sync_back(const at::Tensor& dev, const at::Tensor& cpu) {
  c10::Storage storage = device_storage(cpu.storage(), dev.device().index());
  auto* impl = dev.unsafeGetTensorImpl();
  if (storage.unsafeGetStorageImpl() != dev.storage().unsafeGetStorageImpl())
    impl->set_storage_keep_dtype(std::move(storage));
  if (!same_geometry(dev, cpu)) {
    impl->set_sizes_and_strides(cpu.sizes(), cpu.strides());
    impl->set_storage_offset(cpu.storage_offset());
  }
}

}  // namespace strata::accel::detail
