#pragma once
// The simulated accelerators as a LibTorch device: c10::DeviceType::PrivateUse1, printed
// "privateuseone:<index>" by LibTorch 1.13. Each index is a separate device; tensors live
// in host memory and every op computes exactly what the CPU computes. See
// docs/accel-device.md.

#include <c10/core/Device.h>

namespace strata::accel {

constexpr int kMaxDevices = 64;

// Registers the device with LibTorch (allocator, device guard, kernels and the boxed
// fallback). Idempotent and thread-safe; every public entry point of accel calls it, and
// it also runs when the program starts if accel is linked in at all. Only if a program
// makes device tensors purely through LibTorch (torch::empty(..., Device("privateuseone:0")))
// before touching accel must it call this first.
void register_device();

// c10::Device(PrivateUse1, index); a strata::Error unless 0 <= index < device_count().
c10::Device device(int index = 0);

// Number of simulated devices (default 8).
int device_count();
// Sets the number of devices, 1..kMaxDevices. Call it before the first backward() of the
// process: LibTorch's autograd engine starts one worker thread per device index once.
void set_device_count(int count);

bool is_device(const c10::Device& d);  // d.type() == PrivateUse1

}  // namespace strata::accel
