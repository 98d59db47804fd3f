#include "strata/programs/stage_devices.h"

#include <ATen/Context.h>

#include <algorithm>
#include <sstream>

#include "strata/accel/device.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"

namespace strata::programs {
namespace {

constexpr const char* kExpected = "expected cpu, accel:<preset or spec file> or cuda:<index>";

// One entry; `accel_index` is the next simulated device's index.
StageDevice parse_entry(const std::string& list, size_t position, const std::string& entry,
                        int& accel_index) {
  const std::string where =
      strata::detail::concat("--devices '", list, "': entry ", position + 1, " '", entry, "'");
  STRATA_CHECK(!entry.empty(), "--devices '", list, "': entry ", position + 1, " is empty, ",
               kExpected);
  if (entry == "cpu") return {entry, c10::kCPU, std::nullopt};
  const size_t colon = entry.find(':');
  const std::string kind = entry.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : entry.substr(colon + 1);
  if (kind == "accel") {
    STRATA_CHECK(!rest.empty(), where,
                 " names no accelerator: expected accel:<preset or spec file>");
    std::optional<accel::AcceleratorSpec> spec;
    try {
      spec = accel::AcceleratorSpec::resolve(rest);
    } catch (const strata::Error& e) {
      STRATA_FAIL(where, ": ", e.what());
    }
    STRATA_CHECK(accel_index < accel::kMaxDevices, where, ": more than ", accel::kMaxDevices,
                 " simulated accelerators");
    return {entry, c10::Device(c10::DeviceType::PrivateUse1, accel_index++), spec};
  }
  if (kind == "cuda") {
    STRATA_CHECK(at::hasCUDA(), where,
                 ": this build has no CUDA (LibTorch without CUDA); use cpu or accel:<preset>");
    size_t used = 0;
    int index = -1;
    try {
      index = std::stoi(rest, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    STRATA_CHECK(!rest.empty() && used == rest.size() && index >= 0, where,
                 ": expected cuda:<index> with an index of 0 or more");
    STRATA_CHECK(index < static_cast<int>(at::getNumGPUs()), where, ": this machine has ",
                 at::getNumGPUs(), " CUDA device(s)");
    return {entry, c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index)),
            std::nullopt};
  }
  STRATA_FAIL(where, " is not a device, ", kExpected);
}

}  // namespace

std::vector<StageDevice> parse_stage_devices(const std::string& list, int stages) {
  std::vector<std::string> entries;
  std::stringstream in(list);
  std::string entry;
  while (std::getline(in, entry, ',')) entries.push_back(entry);
  if (!list.empty() && list.back() == ',') entries.emplace_back();
  if (entries.empty()) entries.emplace_back();
  STRATA_CHECK(entries.size() == 1 || static_cast<int>(entries.size()) == stages, "--devices '",
               list, "' has ", entries.size(), " entries for --pp ", stages, ", expected ", stages,
               " (one per stage) or 1 (for all)");
  if (entries.size() == 1) entries.assign(stages, entries[0]);
  std::vector<StageDevice> devices;
  int accel_index = 0;
  for (size_t i = 0; i < entries.size(); ++i)
    devices.push_back(parse_entry(list, i, entries[i], accel_index));
  // LibTorch's autograd engine makes its device threads once, at the first backward.
  if (accel_index > accel::device_count()) accel::set_device_count(accel_index);
  return devices;
}

std::vector<c10::Device> devices_of(const std::vector<StageDevice>& stages) {
  std::vector<c10::Device> devices;
  for (const StageDevice& s : stages) devices.push_back(s.device);
  return devices;
}

parallel::ModuleMover stage_mover() {
  return [](torch::nn::Module& module, const c10::Device& device) {
    if (accel::is_device(device))
      accel::to_device(module, device);
    else
      module.to(device);
  };
}

}  // namespace strata::programs
