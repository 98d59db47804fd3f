#include "strata/accel/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "strata/core/error.h"

namespace strata::accel {

namespace {

bool same(const std::vector<int64_t>& a, const std::vector<int64_t>& b) { return a == b; }

// The output sizes a non-transposed convolution of `input` by `weight` would have.
std::vector<int64_t> plain_conv_output(const std::vector<int64_t>& input,
                                       const std::vector<int64_t>& weight, const AtenConvArgs& a) {
  std::vector<int64_t> out{input[0], weight[0]};
  const size_t spatial = input.size() - 2;
  for (size_t i = 0; i < spatial; ++i) {
    const auto pick = [&](const std::vector<int64_t>& v, int64_t fallback) {
      if (v.empty()) return fallback;
      return v.size() == spatial ? v[i] : v.back();
    };
    const int64_t eff = pick(a.dilation, 1) * (weight[2 + i] - 1) + 1;
    out.push_back((input[2 + i] + 2 * pick(a.padding, 0) - eff) / pick(a.stride, 1) + 1);
  }
  return out;
}

std::string end_name(const AcceleratorSpec* s, int index) {
  return s ? std::to_string(index) : "cpu";
}

}  // namespace

OpDescription describe_device_op(const DeviceOp& op, int64_t word_bytes) {
  AtenConvArgs conv;
  const bool is_conv =
      op.name == "aten::convolution" || op.name == "aten::convolution_overrideable";
  const bool is_conv_backward = op.name == "aten::convolution_backward" ||
                                op.name == "aten::convolution_backward_overrideable";
  if ((is_conv || is_conv_backward) && op.int_args.size() >= 5 &&
      op.input_sizes.size() >= (is_conv ? 2u : 3u)) {
    conv.stride = op.int_args[0];
    conv.padding = op.int_args[1];
    conv.dilation = op.int_args[2];
    conv.groups = op.int_args[4].empty() ? 1 : op.int_args[4][0];
    const auto& input = op.input_sizes[is_conv ? 0 : 1];
    const auto& weight = op.input_sizes[is_conv ? 1 : 2];
    if (input.size() >= 3 && weight.size() == input.size()) {
      // Transposed when the output (forward) or grad_output (backward) is not what a
      // plain convolution of these sizes makes.
      const auto& produced =
          is_conv ? (op.output_sizes.empty() ? std::vector<int64_t>{} : op.output_sizes[0])
                  : op.input_sizes[0];
      conv.transposed =
          !produced.empty() && !same(produced, plain_conv_output(input, weight, conv));
    }
    if (is_conv_backward) {
      // Only the gradients asked for are returned: match them by shape (grad_input has
      // the input's, grad_weight the weight's).
      conv.grad_input = conv.grad_weight = false;
      for (const auto& s : op.output_sizes) {
        if (same(s, input)) conv.grad_input = true;
        if (same(s, weight)) conv.grad_weight = true;
      }
    }
  }
  return describe_aten_op(op.name, op.input_sizes, op.output_sizes, word_bytes, conv);
}

OpCost transfer_cost(int64_t bytes, const AcceleratorSpec* src, const AcceleratorSpec* dst) {
  STRATA_CHECK(src || dst, "transfer_cost: a copy from the CPU to the CPU is not a transfer");
  STRATA_CHECK(bytes >= 0, "transfer_cost: got ", bytes, " bytes, expected >= 0");
  const AcceleratorSpec& charged = dst ? *dst : *src;
  // Bytes per microsecond of each end's DRAM; the slower one bounds the copy.
  double bytes_per_us = 0;
  for (const AcceleratorSpec* s : {src, dst}) {
    if (!s) continue;
    const double b = s->dram_bytes_per_cycle * s->clock_mhz;
    bytes_per_us = bytes_per_us > 0 ? std::min(bytes_per_us, b) : b;
  }
  const double bytes_per_cycle = bytes_per_us / charged.clock_mhz;
  OpCost c;
  c.compute_cycles = 0;
  c.cycles = c.stall_cycles =
      static_cast<int64_t>(std::ceil(static_cast<double>(bytes) / bytes_per_cycle));
  c.pe_cycles = static_cast<double>(c.cycles) * charged.peak_macs_per_cycle();
  const auto words = [&](const AcceleratorSpec& s) {
    return (bytes + s.word_bytes - 1) / s.word_bytes;
  };
  if (src) {
    c.dram_reads = words(*src);
    c.energy.dram += static_cast<double>(c.dram_reads) * src->energy.dram_read;
  }
  if (dst) {
    c.dram_writes = words(*dst);
    c.energy.dram += static_cast<double>(c.dram_writes) * dst->energy.dram_write;
  }
  return c;
}

Simulator::Simulator(const std::string& default_spec)
    : Simulator(AcceleratorSpec::resolve(default_spec)) {}

Simulator::Simulator(AcceleratorSpec default_spec) : default_spec_(std::move(default_spec)) {
  default_spec_.validate("spec '" + default_spec_.name + "'");
}

void Simulator::configure(int index, const AcceleratorSpec& spec) {
  STRATA_CHECK(index >= 0 && index < kMaxDevices, "simulator: device index ", index,
               ", expected 0..", kMaxDevices - 1);
  spec.validate("spec '" + spec.name + "'");
  std::lock_guard<std::mutex> lock(mutex_);
  Device& d = devices_[index];
  d.spec = spec;
  d.dispatcher = std::make_shared<CostDispatcher>(spec);
  cache_.clear();
  name_device_locked(index, d);
}

AcceleratorSpec Simulator::spec(int index) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = devices_.find(index);
  return it == devices_.end() ? default_spec_ : it->second.spec;
}

Simulator::Device& Simulator::device_locked(int index) {
  auto it = devices_.find(index);
  if (it != devices_.end()) return it->second;
  Device& d = devices_[index];
  d.spec = default_spec_;
  d.dispatcher = std::make_shared<CostDispatcher>(default_spec_);
  name_device_locked(index, d);
  return d;
}

void Simulator::name_device_locked(int index, const Device& d) {
  report_.set_device(index, d.spec.name, d.spec.clock_mhz);
}

void Simulator::on_op(const DeviceOp& op) {
  std::lock_guard<std::mutex> lock(mutex_);
  Key key{op.device, op.name, op.input_sizes, op.output_sizes, op.int_args};
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    Device& d = device_locked(op.device);
    auto charge =
        std::make_shared<Charge>(d.dispatcher->charge(describe_device_op(op, d.spec.word_bytes)));
    it = cache_.emplace(std::move(key), std::move(charge)).first;
  }
  report_.add(op.device, op.layer, op.name, *it->second);
  if (it->second->charged) op_totals_[op.device] += it->second->cost;
}

void Simulator::on_transfer(const DeviceTransfer& t) {
  std::lock_guard<std::mutex> lock(mutex_);
  const AcceleratorSpec* src = t.src_device >= 0 ? &device_locked(t.src_device).spec : nullptr;
  const AcceleratorSpec* dst = t.dst_device >= 0 ? &device_locked(t.dst_device).spec : nullptr;
  if (!src && !dst) return;  // CPU to CPU: not the device's business
  const int charged = dst ? t.dst_device : t.src_device;
  const std::string op =
      fmt::format("transfer {}->{}", end_name(src, t.src_device), end_name(dst, t.dst_device));
  const OpCost cost = transfer_cost(t.bytes, src, dst);
  report_.add(charged, "(transfer)", op, cost);
  transfer_totals_[charged] += cost;
}

CostReport Simulator::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return report_;
}

void Simulator::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  report_.clear();
  op_totals_.clear();
  transfer_totals_.clear();
}

OpCost Simulator::op_total(int index) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = op_totals_.find(index);
  return it == op_totals_.end() ? OpCost() : it->second;
}

OpCost Simulator::transfer_total(int index) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = transfer_totals_.find(index);
  return it == transfer_totals_.end() ? OpCost() : it->second;
}

}  // namespace strata::accel
