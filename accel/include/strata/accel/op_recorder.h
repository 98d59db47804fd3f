#pragma once
// What the simulated device reports: every op it executes (DeviceOp) and every copy that
// crosses between devices or to/from the CPU (DeviceTransfer), delivered to the installed
// OpRecorder. This is the bridge from the device (accel/src/device) to the cost models.
//
// Which ops are reported: every op run by the boxed fallback, and the explicit kernels that
// compute (convolution and its backward, same-device copies as "aten::copy_"). Allocation
// and views (empty, empty_strided, as_strided, view, _reshape_alias, resize_, set_, and
// any fallback op whose schema says it returns an alias) are not compute and not reported.
// A copy between two devices, or between a device and the CPU, is reported once, as a
// DeviceTransfer, and not as an op; so is tensor.item() on a device tensor (one element
// read back by the host, aten::_local_scalar_dense).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace strata::accel {

// Which tensor an op argument is, for graph building (GraphRecorder in memory_plan.h).
struct DeviceTensorRef {
  uint64_t storage = 0;    // the storage's address: views of one storage share it
  int64_t bytes = 0;       // the storage's bytes
  bool parameter = false;  // the storage of a layer's parameter or buffer (to_device)
};

struct DeviceOp {
  int device = 0;    // index of the simulated device that ran it
  std::string name;  // schema name without overload, e.g. "aten::addmm"
  // Sizes of every defined tensor argument (tensor lists flattened), in schema order;
  // in-place and out= arguments included.
  std::vector<std::vector<int64_t>> input_sizes;
  std::vector<std::vector<int64_t>> output_sizes;  // every defined returned tensor
  std::vector<DeviceTensorRef> inputs;             // one per input_sizes entry
  std::vector<DeviceTensorRef> outputs;            // one per output_sizes entry
  // The integer arguments in schema order: each int list (stride, padding, dilation,
  // kernel_size, dims...) as it is, each plain int (groups, dim) as a one-element list.
  // Bools, floats and Scalars (alpha, beta) are left out; so are omitted optional ints.
  // Convolution: stride, padding, dilation, output_padding, {groups}.
  std::vector<std::vector<int64_t>> int_args;
  int64_t element_size = 0;  // bytes per element of the first tensor argument
  std::string layer;         // module path ("features.0"), or "" when unknown
};

struct DeviceTransfer {
  int src_device = -1;  // -1 = CPU
  int dst_device = -1;  // -1 = CPU
  int64_t bytes = 0;    // elements copied times the destination's element size
};

// Receives the reports. Calls can come from several threads at once: the autograd engine
// runs the backward ops of device d on its own worker thread for d.
class OpRecorder {
 public:
  virtual ~OpRecorder() = default;
  virtual void on_op(const DeviceOp& op) = 0;
  virtual void on_transfer(const DeviceTransfer& transfer) = 0;
};

// Installs `recorder` for every thread (nullptr: none, the default; then nothing is
// collected and recording costs nothing). Returns the one installed before.
std::shared_ptr<OpRecorder> set_op_recorder(std::shared_ptr<OpRecorder> recorder);
std::shared_ptr<OpRecorder> op_recorder();

// Installs a recorder for its lifetime and restores the previous one afterwards.
class RecorderScope {
 public:
  explicit RecorderScope(std::shared_ptr<OpRecorder> recorder);
  ~RecorderScope();
  RecorderScope(const RecorderScope&) = delete;
  RecorderScope& operator=(const RecorderScope&) = delete;

 private:
  std::shared_ptr<OpRecorder> previous_;
};

// Counts ops per name and keeps every op and transfer it saw (meant for tests and small
// runs; it grows with the run). Thread-safe.
class CountingRecorder : public OpRecorder {
 public:
  void on_op(const DeviceOp& op) override;
  void on_transfer(const DeviceTransfer& transfer) override;

  int64_t count(const std::string& name) const;   // ops of that name
  std::map<std::string, int64_t> counts() const;  // ops per name
  std::vector<DeviceOp> ops() const;
  std::vector<DeviceTransfer> transfers() const;
  int64_t transferred_bytes() const;
  void clear();

 private:
  mutable std::mutex mutex_;
  std::map<std::string, int64_t> counts_;
  std::vector<DeviceOp> ops_;
  std::vector<DeviceTransfer> transfers_;
};

// Attributes every op this thread runs on the device to `name` while it lives (nested
// scopes: the innermost wins). Without a scope, an op is attributed to the layer whose
// parameter or buffer storage (tagged by to_device) it reads; an op that reads none
// (relu, pooling) gets the layer of the most recent such op on the same thread.
// Backward ops run on the autograd engine's worker threads, which do not see the
// caller's scopes; while a recorder is installed each of them gets the layer its forward
// op was attributed to (through the autograd Node's sequence number).
class LayerScope {
 public:
  explicit LayerScope(std::string name);
  ~LayerScope();
  LayerScope(const LayerScope&) = delete;
  LayerScope& operator=(const LayerScope&) = delete;
};

}  // namespace strata::accel
