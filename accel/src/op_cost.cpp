#include "strata/accel/op_cost.h"

#include <algorithm>
#include <cmath>

namespace strata::accel {

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
  const double bytes =
      static_cast<double>(dram_reads + dram_writes) * static_cast<double>(spec.word_bytes);
  const auto memory_cycles = static_cast<int64_t>(std::ceil(bytes / spec.dram_bytes_per_cycle));
  stall_cycles = std::max<int64_t>(0, memory_cycles - compute_cycles);
  cycles = compute_cycles + stall_cycles;
  pe_cycles = static_cast<double>(cycles) * spec.peak_macs_per_cycle();
}

OpCost& OpCost::operator+=(const OpCost& o) {
  cycles += o.cycles;
  compute_cycles += o.compute_cycles;
  stall_cycles += o.stall_cycles;
  macs += o.macs;
  vector_ops += o.vector_ops;
  pe_cycles += o.pe_cycles;
  sram_reads += o.sram_reads;
  sram_writes += o.sram_writes;
  dram_reads += o.dram_reads;
  dram_writes += o.dram_writes;
  energy += o.energy;
  return *this;
}

OpCost operator+(OpCost a, const OpCost& b) { return a += b; }

OpCost OpCost::repeated(int64_t times) const {
  OpCost r;
  r.cycles = cycles * times;
  r.compute_cycles = compute_cycles * times;
  r.stall_cycles = stall_cycles * times;
  r.macs = macs * times;
  r.vector_ops = vector_ops * times;
  r.pe_cycles = pe_cycles * static_cast<double>(times);
  r.sram_reads = sram_reads * times;
  r.sram_writes = sram_writes * times;
  r.dram_reads = dram_reads * times;
  r.dram_writes = dram_writes * times;
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
