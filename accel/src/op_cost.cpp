#include "strata/accel/op_cost.h"

#include <algorithm>
#include <cmath>

#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

using core::checked_add;
using core::checked_mul;

EnergyBreakdown& EnergyBreakdown::operator+=(const EnergyBreakdown& o) {
  mac += o.mac;
  sram += o.sram;
  dram += o.dram;
  vector += o.vector;
  return *this;
}

nlohmann::json EnergyBreakdown::to_json() const {
  return {{"mac", mac}, {"sram", sram}, {"dram", dram}, {"vector", vector}, {"total", total()}};
}

void OpCost::price(const EnergyTable& t) {
  energy.mac = static_cast<double>(macs) * t.mac;
  energy.sram = static_cast<double>(sram_reads) * t.sram_read +
                static_cast<double>(sram_writes) * t.sram_write;
  energy.dram = static_cast<double>(dram_reads) * t.dram_read +
                static_cast<double>(dram_writes) * t.dram_write;
  energy.vector = static_cast<double>(vector_ops) * t.vector_op;
}

void OpCost::add_stalls(const AcceleratorSpec& spec) {
  const double bytes = (static_cast<double>(dram_reads) + static_cast<double>(dram_writes)) *
                       static_cast<double>(spec.word_bytes);
  const int64_t memory_cycles =
      core::checked_ceil(bytes / spec.dram_bytes_per_cycle, "memory cycles");
  stall_cycles = std::max<int64_t>(0, memory_cycles - compute_cycles);
  cycles = checked_add(compute_cycles, stall_cycles, "cycles");
  pe_cycles = static_cast<double>(cycles) * spec.peak_macs_per_cycle();
}

OpCost& OpCost::operator+=(const OpCost& o) {
  cycles = checked_add(cycles, o.cycles, "cycles");
  compute_cycles = checked_add(compute_cycles, o.compute_cycles, "compute cycles");
  stall_cycles = checked_add(stall_cycles, o.stall_cycles, "stall cycles");
  macs = checked_add(macs, o.macs, "MACs");
  vector_ops = checked_add(vector_ops, o.vector_ops, "vector ops");
  pe_cycles += o.pe_cycles;
  sram_reads = checked_add(sram_reads, o.sram_reads, "SRAM reads");
  sram_writes = checked_add(sram_writes, o.sram_writes, "SRAM writes");
  dram_reads = checked_add(dram_reads, o.dram_reads, "DRAM reads");
  dram_writes = checked_add(dram_writes, o.dram_writes, "DRAM writes");
  energy += o.energy;
  return *this;
}

OpCost operator+(OpCost a, const OpCost& b) { return a += b; }

OpCost OpCost::repeated(int64_t times) const {
  OpCost r;
  r.cycles = checked_mul(cycles, times, "cycles");
  r.compute_cycles = checked_mul(compute_cycles, times, "compute cycles");
  r.stall_cycles = checked_mul(stall_cycles, times, "stall cycles");
  r.macs = checked_mul(macs, times, "MACs");
  r.vector_ops = checked_mul(vector_ops, times, "vector ops");
  r.pe_cycles = pe_cycles * static_cast<double>(times);
  r.sram_reads = checked_mul(sram_reads, times, "SRAM reads");
  r.sram_writes = checked_mul(sram_writes, times, "SRAM writes");
  r.dram_reads = checked_mul(dram_reads, times, "DRAM reads");
  r.dram_writes = checked_mul(dram_writes, times, "DRAM writes");
  const auto k = static_cast<double>(times);
  r.energy = {energy.mac * k, energy.sram * k, energy.dram * k, energy.vector * k};
  return r;
}

nlohmann::json OpCost::to_json() const {
  return {{"cycles", cycles},
          {"compute_cycles", compute_cycles},
          {"stall_cycles", stall_cycles},
          {"macs", macs},
          {"vector_ops", vector_ops},
          {"utilization", utilization()},
          {"sram_reads", sram_reads},
          {"sram_writes", sram_writes},
          {"dram_reads", dram_reads},
          {"dram_writes", dram_writes},
          {"access_unit", "words"},
          {"energy_pj", energy.total()},
          {"energy_breakdown_pj", energy.to_json()}};
}

}  // namespace strata::accel
