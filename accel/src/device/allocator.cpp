// Host memory for the simulated devices, tagged with the device index, with live and peak
// bytes per device.

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <array>
#include <atomic>

#include "internal.h"
#include "strata/accel/device.h"
#include "strata/accel/device_allocator.h"
#include "strata/core/error.h"

namespace strata::accel {
namespace {

// Zero-initialized atomics are constant-initialized: safe to use from static initializers.
std::atomic<int64_t> g_allocated[kMaxDevices];
std::atomic<int64_t> g_peak[kMaxDevices];

void add_bytes(int device, int64_t bytes) {
  const int64_t now = g_allocated[device].fetch_add(bytes) + bytes;
  int64_t peak = g_peak[device].load();
  while (now > peak && !g_peak[device].compare_exchange_weak(peak, now)) {
  }
}

void delete_context(void* raw) {
  auto* ctx = static_cast<detail::StorageContext*>(raw);
  g_allocated[ctx->device].fetch_sub(int64_t(ctx->nbytes));
  if (!ctx->adopted) c10::free_cpu(ctx->data);
  delete ctx;
}

c10::DataPtr make_data_ptr(void* data, int device, size_t nbytes, c10::Storage adopted) {
  auto* ctx = new detail::StorageContext{data, device, nbytes, nullptr, std::move(adopted)};
  add_bytes(device, int64_t(nbytes));
  return c10::DataPtr(data, ctx, &delete_context, c10::Device(detail::kDeviceType, device));
}

}  // namespace

c10::DataPtr DeviceAllocator::allocate(size_t nbytes) const {
  // c10::alloc_cpu aligns as the CPU allocator does, so that vectorized CPU kernels take
  // the same paths (and give the same bits) on device memory.
  void* data = nbytes ? c10::alloc_cpu(nbytes) : nullptr;
  return make_data_ptr(data, index_, nbytes, c10::Storage());
}

DeviceAllocator* device_allocator(int index) {
  static std::array<DeviceAllocator*, kMaxDevices> allocators = [] {
    std::array<DeviceAllocator*, kMaxDevices> all{};
    for (int i = 0; i < kMaxDevices; ++i) all[i] = new DeviceAllocator(i);  // never freed
    return all;
  }();
  return allocators[detail::checked_index(index)];
}

DeviceMemoryStats memory_stats(int index) {
  register_device();
  STRATA_CHECK(index >= 0 && index < device_count(), "accel device index: got ", index,
               ", expected 0..", device_count() - 1);
  return {g_allocated[index].load(), g_peak[index].load()};
}

void reset_peak_memory(int index) {
  register_device();
  STRATA_CHECK(index >= 0 && index < device_count(), "accel device index: got ", index,
               ", expected 0..", device_count() - 1);
  g_peak[index].store(g_allocated[index].load());
}

std::string storage_layer(const c10::Storage& storage) {
  const auto* ctx = storage ? detail::context_of(storage.data_ptr()) : nullptr;
  return ctx && ctx->layer ? *ctx->layer : std::string();
}

void set_storage_layer(const c10::Storage& storage, const std::string& layer) {
  auto* ctx = storage ? detail::context_of(storage.data_ptr()) : nullptr;
  STRATA_CHECK(ctx, "set_storage_layer(", layer, "): the storage is not on an accel device");
  ctx->layer = std::make_shared<const std::string>(layer);
}

namespace detail {

StorageContext* context_of(const c10::DataPtr& data_ptr) {
  return data_ptr.get_deleter() == &delete_context
             ? static_cast<StorageContext*>(data_ptr.get_context())
             : nullptr;
}

c10::DataPtr adopt_cpu_storage(const c10::Storage& cpu, int device) {
  return make_data_ptr(cpu.data(), device, cpu.nbytes(), cpu);
}

}  // namespace detail
}  // namespace strata::accel
