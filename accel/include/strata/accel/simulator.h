#pragma once
// The simulator: an OpRecorder that charges every op the simulated devices run, and every
// copy between them, to each device's cost model, into one CostReport.
//
//   auto sim = std::make_shared<strata::accel::Simulator>();   // every device: generic-32
//   sim->configure(0, strata::accel::AcceleratorSpec::preset("eyeriss"));
//   strata::accel::to_device(model, strata::accel::device(0));
//   {
//     strata::accel::RecorderScope scope(sim);                  // start charging
//     auto loss = model->forward(x.to(strata::accel::device(0))).sum();
//     loss.backward();
//   }
//   std::cout << sim->report().table();
//
// Ops: each DeviceOp is described by describe_aten_op with the spec's word_bytes as the
// element size (the accelerator computes in its own datatype, as the GEMM, conv and
// attention models count words) and charged by the device's CostDispatcher. An op no
// model can price is an uncharged entry of the report (listed with its count and reason),
// never a silent zero.
//
// Transfers: a copy CPU -> device d, device d -> CPU or device s -> device d is one report
// entry, op "transfer cpu->d" / "transfer d->cpu" / "transfer s->d", layer "(transfer)",
// charged to the receiving device (to the sending one for a copy to the CPU):
//   cycles      = ceil(bytes / bandwidth) at the charged device's clock, bandwidth the
//                 slower end's DRAM bandwidth (dram_bytes_per_cycle x clock; the CPU end
//                 is taken to keep up) — the link is assumed as fast as DRAM
//   dram_reads  = words read from the sending device's DRAM (its word size), 0 from CPU
//   dram_writes = words written to the receiving device's DRAM, 0 to the CPU
//   energy      = those accesses at each end's own DRAM energy per word
// bytes are the host bytes the copy moves (DeviceTransfer::bytes). The array is idle
// (pe_cycles = cycles x peak MACs per cycle, so utilization stays MACs / pe_cycles).

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "strata/accel/accel_spec.h"
#include "strata/accel/aten_ops.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/device.h"
#include "strata/accel/op_recorder.h"
#include "strata/accel/report.h"

namespace strata::accel {

// What describe_aten_op needs from a DeviceOp: convolution arguments from int_args
// (stride, padding, dilation, output_padding, {groups}); whether a convolution was
// transposed from its output's channels and sizes (the bool is not an int argument); and
// which gradients a convolution_backward produced from its outputs' sizes.
OpDescription describe_device_op(const DeviceOp& op, int64_t word_bytes);

// The cost of one transfer (see above); `src` / `dst` null for the CPU end.
OpCost transfer_cost(int64_t bytes, const AcceleratorSpec* src, const AcceleratorSpec* dst);

class Simulator : public OpRecorder {
 public:
  // Every device not configured gets this preset (or spec file).
  explicit Simulator(const std::string& default_spec = "generic-32");
  explicit Simulator(AcceleratorSpec default_spec);

  // Device `index` is `spec` from now on (ops already charged keep their cost).
  void configure(int index, const AcceleratorSpec& spec);
  AcceleratorSpec spec(int index) const;

  void on_op(const DeviceOp& op) override;
  void on_transfer(const DeviceTransfer& transfer) override;

  // A copy of the report so far, every device that ran something named with its clock.
  CostReport report() const;
  // Forgets the entries (not the configuration) and the running totals below.
  void clear();

  // Running totals of device `index` since construction or clear(), without copying the
  // report: its charged ops, and the transfers charged to it. Cheap enough to read around
  // every pipeline instruction: the difference of two readings is what the device did in
  // between (a device runs one instruction at a time, whichever thread its ops run on).
  OpCost op_total(int index) const;
  OpCost transfer_total(int index) const;

 private:
  struct Device {
    AcceleratorSpec spec;
    std::shared_ptr<CostDispatcher> dispatcher;
  };
  Device& device_locked(int index);  // mutex_ held
  void name_device_locked(int index, const Device& d);

  mutable std::mutex mutex_;
  AcceleratorSpec default_spec_;
  std::map<int, Device> devices_;
  // The same op on the same shapes costs the same: a training step repeats every op each
  // step, so the charge is looked up instead of re-derived (keeps the recording cheap).
  using Key = std::tuple<int, std::string, std::vector<std::vector<int64_t>>,
                         std::vector<std::vector<int64_t>>, std::vector<std::vector<int64_t>>>;
  std::map<Key, std::shared_ptr<const Charge>> cache_;
  CostReport report_;
  std::map<int, OpCost> op_totals_, transfer_totals_;
};

}  // namespace strata::accel
