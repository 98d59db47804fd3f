#pragma once
// The devices of a pipeline's stages, as --devices names them: "cpu", "accel:<preset or
// spec file>" (a simulated accelerator, docs/accel.md) or "cuda:<index>" (a CUDA build
// only). Lives with the programs because it joins parallel (which knows devices only as
// c10::Device) and accel (which knows the presets), as ARCHITECTURE.md, "Devices", asks.

#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <vector>

#include "strata/accel/accel_spec.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"

namespace strata::programs {

struct StageDevice {
  std::string name;  // the entry as given ("accel:nvdla")
  c10::Device device = c10::kCPU;
  std::optional<accel::AcceleratorSpec> spec;  // a simulated accelerator's
};

// `list` for `stages` pipeline stages (ranks): one entry each, or one for all. Every accel
// entry gets a device index of its own (0, 1, ... in stage order; one entry for all gives
// each stage its own), so that two stages on one preset are two devices. Raises
// strata::Error naming the entry for an empty or unknown entry, an unknown preset or
// unreadable spec file, a CUDA device in a build without CUDA (or past the GPUs there),
// and a count that is neither 1 nor `stages`.
std::vector<StageDevice> parse_stage_devices(const std::string& list, int stages);

// The c10::Devices, for PipelineParallelOptions::devices.
std::vector<c10::Device> devices_of(const std::vector<StageDevice>& stages);
// A ModuleMover that moves to simulated accelerators with accel::to_device and to other
// devices with Module::to.
parallel::ModuleMover stage_mover();

}  // namespace strata::programs
