// Registration of the simulated devices with LibTorch: device guard, allocator, kernels
// and the boxed fallback. register_device() does it once; it runs when the program starts
// (the initializer at the bottom, in the same object file as every entry point, so that
// linking accel as a static library cannot drop it) and again, as a no-op, from each
// entry point.

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <mutex>

#include "internal.h"
#include "strata/accel/device.h"
#include "strata/accel/device_allocator.h"
#include "strata/core/error.h"

namespace strata::accel {
namespace {

std::atomic<int> g_device_count{8};
thread_local c10::DeviceIndex t_current_device = 0;

// The current device per thread, one default stream per device. The device is
// synchronous (every kernel has finished when it returns), so events are always complete:
// the autograd engine records and waits on them when a gradient crosses devices.
struct GuardImpl final : c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return detail::kDeviceType; }
  c10::Device exchangeDevice(c10::Device d) const override {
    const c10::Device old = getDevice();
    setDevice(d);
    return old;
  }
  c10::Device getDevice() const override { return {detail::kDeviceType, t_current_device}; }
  void setDevice(c10::Device d) const override {
    TORCH_CHECK(d.type() == detail::kDeviceType, "accel device guard: got device ", d);
    if (d.has_index()) t_current_device = c10::DeviceIndex(detail::checked_index(d.index()));
  }
  void uncheckedSetDevice(c10::Device d) const noexcept override {
    if (d.has_index()) t_current_device = d.index();
  }
  c10::Stream getStream(c10::Device d) const noexcept override {
    return c10::Stream(c10::Stream::DEFAULT, d);
  }
  c10::Stream exchangeStream(c10::Stream s) const noexcept override {
    return c10::Stream(c10::Stream::DEFAULT, s.device());
  }
  c10::DeviceIndex deviceCount() const noexcept override {
    return c10::DeviceIndex(g_device_count.load());
  }
  void record(void**, const c10::Stream&, const c10::DeviceIndex,
              const c10::EventFlag) const override {}
  void block(void*, const c10::Stream&) const override {}
  bool queryEvent(void*) const override { return true; }
  bool queryStream(const c10::Stream&) const override { return true; }
  void synchronizeStream(const c10::Stream&) const override {}
};

// c10::GetAllocator(PrivateUse1) (used by generic LibTorch code) allocates on the
// current device of the calling thread.
struct CurrentDeviceAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t nbytes) const override {
    return device_allocator(detail::current_device())->allocate(nbytes);
  }
};

}  // namespace

void register_device() {
  static std::once_flag once;
  std::call_once(once, [] {
    static GuardImpl guard;
    static c10::impl::DeviceGuardImplRegistrar guard_registrar(detail::kDeviceType, &guard);
    static CurrentDeviceAllocator allocator;
    c10::SetAllocator(detail::kDeviceType, &allocator);
    static torch::Library kernels(torch::Library::IMPL, "aten", c10::DispatchKey::PrivateUse1,
                                  __FILE__, __LINE__);
    detail::register_kernels(kernels);
    detail::route_to_cpu_kernels(kernels);
    static torch::Library fallback(torch::Library::IMPL, "_", c10::DispatchKey::PrivateUse1,
                                   __FILE__, __LINE__);
    fallback.fallback(torch::CppFunction::makeFromBoxedFunction<&detail::boxed_fallback>());
  });
}

c10::Device device(int index) {
  register_device();
  STRATA_CHECK(index >= 0 && index < device_count(), "accel device index: got ", index,
               ", expected 0..", device_count() - 1, " (set_device_count changes the count)");
  return c10::Device(detail::kDeviceType, c10::DeviceIndex(index));
}

int device_count() { return g_device_count.load(); }

void set_device_count(int count) {
  register_device();
  STRATA_CHECK(count >= 1 && count <= kMaxDevices, "accel device count: got ", count,
               ", expected 1..", kMaxDevices);
  g_device_count.store(count);
}

bool is_device(const c10::Device& d) { return d.type() == detail::kDeviceType; }

namespace detail {

int current_device() { return t_current_device; }

int checked_index(int index) {
  TORCH_CHECK(index >= 0 && index < g_device_count.load(), "accel device index: got ", index,
              ", expected 0..", g_device_count.load() - 1);
  return index;
}

int factory_index(const c10::optional<c10::Device>& device) {
  if (device && device->has_index()) return checked_index(device->index());
  return current_device();
}

}  // namespace detail

namespace {
[[maybe_unused]] const bool g_registered_at_load = (register_device(), true);
}  // namespace

}  // namespace strata::accel
