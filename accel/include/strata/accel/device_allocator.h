#pragma once
// Memory of the simulated devices: host memory, tagged with the device index so that
// tensors report Device(PrivateUse1, index), with allocated and peak bytes per device.

#include <c10/core/Allocator.h>
#include <c10/core/Storage.h>

#include <cstdint>
#include <string>

namespace strata::accel {

// The allocator of one device index. Its DataPtrs carry Device(PrivateUse1, index) and a
// context that also names the layer owning the storage (see to_device).
class DeviceAllocator final : public c10::Allocator {
 public:
  explicit DeviceAllocator(int index) : index_(index) {}
  c10::DataPtr allocate(size_t nbytes) const override;
  int index() const { return index_; }

 private:
  int index_;
};

// The allocator of device `index` (0 <= index < device_count()).
DeviceAllocator* device_allocator(int index);

struct DeviceMemoryStats {
  int64_t allocated_bytes = 0;  // live bytes now
  int64_t peak_bytes = 0;       // most live bytes since start or reset_peak_memory
};

// Bytes held by device tensors of `index`: both those the allocator made and CPU results
// of fallback ops adopted as device storage without a copy.
DeviceMemoryStats memory_stats(int index);
void reset_peak_memory(int index);

// The module path that owns a device storage ("" if none: not made by to_device).
std::string storage_layer(const c10::Storage& storage);
// Tags a device storage with its owning module path (to_device does this).
void set_storage_layer(const c10::Storage& storage, const std::string& layer);

}  // namespace strata::accel
