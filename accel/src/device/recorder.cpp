// The installed OpRecorder, layer attribution and CountingRecorder.

#include <ATen/SequenceNumber.h>
#include <ATen/record_function.h>

#include <mutex>

#include "internal.h"
#include "strata/accel/device.h"
#include "strata/accel/device_allocator.h"

namespace strata::accel {
namespace {

std::mutex g_recorder_mutex;
std::shared_ptr<OpRecorder> g_recorder;

thread_local std::vector<std::string> t_scopes;
thread_local std::string t_last_layer;

std::shared_ptr<OpRecorder> current_recorder() {
  std::lock_guard<std::mutex> lock(g_recorder_mutex);
  return g_recorder;
}

// Backward attribution. Backward ops run on the autograd engine's threads, inside the
// Node that the forward op's autograd kernel made. LibTorch tags each Node with the
// forward thread's id and a per-thread sequence number, and reports both to
// RecordFunction callbacks of scope BACKWARD_FUNCTION when it runs the Node. So: when a
// device op is reported in forward, the Node its autograd kernel has just made has the
// sequence number peek() - 1 on this thread, and it is remembered with the op's layer
// (first op wins: an op that made no Node must not take an earlier one); when the Node
// runs in backward, its ops get that layer. A ring of slots bounds the memory; a slot
// overwritten before its Node ran only loses that Node's layer.
constexpr size_t kNodeSlots = size_t(1) << 16;
struct NodeLayer {
  uint64_t thread = 0;
  uint64_t seq = 0;
  bool used = false;
  std::string layer;
};
std::mutex g_node_mutex;
std::vector<NodeLayer>& node_layers() {
  static std::vector<NodeLayer> slots(kNodeSlots);
  return slots;
}
thread_local std::vector<std::string> t_node_layers;  // of the Nodes running on this thread
at::CallbackHandle g_node_callback = 0;

void remember_node_layer(const std::string& layer) {
  const uint64_t next = at::sequence_number::peek();
  if (next == 0) return;
  const uint64_t seq = next - 1, thread = at::RecordFunction::currentThreadId();
  std::lock_guard<std::mutex> lock(g_node_mutex);
  NodeLayer& slot = node_layers()[seq % kNodeSlots];
  if (slot.used && slot.seq == seq && slot.thread == thread) return;
  slot = {thread, seq, true, layer};
}

std::unique_ptr<at::ObserverContext> on_node_start(const at::RecordFunction& fn) {
  std::string layer;
  const uint64_t seq = uint64_t(fn.seqNr());
  {
    std::lock_guard<std::mutex> lock(g_node_mutex);
    const NodeLayer& slot = node_layers()[seq % kNodeSlots];
    if (fn.seqNr() >= 0 && slot.used && slot.seq == seq && slot.thread == fn.forwardThreadId())
      layer = slot.layer;
  }
  t_node_layers.push_back(std::move(layer));
  return nullptr;
}

void on_node_end(const at::RecordFunction&, at::ObserverContext*) {
  if (!t_node_layers.empty()) t_node_layers.pop_back();
}

DeviceTensorRef tensor_ref(const at::Tensor& t) {
  DeviceTensorRef ref;
  if (!t.has_storage()) {
    ref.bytes = int64_t(t.nbytes());
    return ref;
  }
  const auto& storage = t.storage();
  ref.storage = reinterpret_cast<uint64_t>(storage.unsafeGetStorageImpl());
  ref.bytes = int64_t(storage.nbytes());
  const auto* ctx = detail::context_of(storage.data_ptr());
  ref.parameter = ctx && ctx->layer;
  return ref;
}

}  // namespace

namespace detail {

std::atomic<bool> g_recording{false};

std::string attribute_layer(const std::vector<at::Tensor>& inputs) {
  if (!t_scopes.empty()) return t_scopes.back();
  if (!t_node_layers.empty() && !t_node_layers.back().empty()) {
    t_last_layer = t_node_layers.back();
    return t_last_layer;
  }
  for (const auto& t : inputs) {
    if (!t.has_storage()) continue;
    const auto* ctx = context_of(t.storage().data_ptr());
    if (ctx && ctx->layer) {
      t_last_layer = *ctx->layer;
      break;
    }
  }
  return t_last_layer;
}

void report_op(const std::string& name, int device, const std::vector<at::Tensor>& inputs,
               const std::vector<at::Tensor>& outputs, std::vector<std::vector<int64_t>> int_args) {
  auto recorder = current_recorder();
  if (!recorder) return;
  DeviceOp op;
  op.device = device;
  op.name = name;
  for (const auto& t : inputs) {
    op.input_sizes.push_back(t.sizes().vec());
    op.inputs.push_back(tensor_ref(t));
  }
  for (const auto& t : outputs) {
    op.output_sizes.push_back(t.sizes().vec());
    op.outputs.push_back(tensor_ref(t));
  }
  op.int_args = std::move(int_args);
  if (!inputs.empty())
    op.element_size = int64_t(inputs.front().element_size());
  else if (!outputs.empty())
    op.element_size = int64_t(outputs.front().element_size());
  op.layer = attribute_layer(inputs);
  if (t_node_layers.empty()) remember_node_layer(op.layer);  // forward
  recorder->on_op(op);
}

void report_transfer(const DeviceTransfer& transfer) {
  if (auto recorder = current_recorder()) recorder->on_transfer(transfer);
}

}  // namespace detail

std::shared_ptr<OpRecorder> set_op_recorder(std::shared_ptr<OpRecorder> recorder) {
  register_device();
  std::lock_guard<std::mutex> lock(g_recorder_mutex);
  detail::g_recording.store(recorder != nullptr);
  // The backward callbacks only while recording: they cost every backward Node a
  // RecordFunction.
  if (recorder && !g_node_callback) {
    g_node_callback = at::addGlobalCallback(at::RecordFunctionCallback(&on_node_start, &on_node_end)
                                                .scopes({at::RecordScope::BACKWARD_FUNCTION}));
  } else if (!recorder && g_node_callback) {
    at::removeCallback(g_node_callback);
    g_node_callback = 0;
  }
  std::swap(g_recorder, recorder);
  return recorder;
}

std::shared_ptr<OpRecorder> op_recorder() { return current_recorder(); }

RecorderScope::RecorderScope(std::shared_ptr<OpRecorder> recorder)
    : previous_(set_op_recorder(std::move(recorder))) {}

RecorderScope::~RecorderScope() { set_op_recorder(std::move(previous_)); }

LayerScope::LayerScope(std::string name) { t_scopes.push_back(std::move(name)); }

LayerScope::~LayerScope() { t_scopes.pop_back(); }

void CountingRecorder::on_op(const DeviceOp& op) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++counts_[op.name];
  ops_.push_back(op);
}

void CountingRecorder::on_transfer(const DeviceTransfer& transfer) {
  std::lock_guard<std::mutex> lock(mutex_);
  transfers_.push_back(transfer);
}

int64_t CountingRecorder::count(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(name);
  return it == counts_.end() ? 0 : it->second;
}

std::map<std::string, int64_t> CountingRecorder::counts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counts_;
}

std::vector<DeviceOp> CountingRecorder::ops() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ops_;
}

std::vector<DeviceTransfer> CountingRecorder::transfers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return transfers_;
}

int64_t CountingRecorder::transferred_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t total = 0;
  for (const auto& t : transfers_) total += t.bytes;
  return total;
}

void CountingRecorder::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  counts_.clear();
  ops_.clear();
  transfers_.clear();
}

}  // namespace strata::accel
