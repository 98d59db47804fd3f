#pragma once
// What an op costs on a simulated accelerator. Access counts are in words of the spec's
// word size (AcceleratorSpec::word_bytes), never bytes; energies are pJ.

#include <cstdint>

#include <nlohmann/json.hpp>

#include "strata/accel/accel_spec.h"

namespace strata::accel {

struct EnergyBreakdown {
  double mac = 0;     // MACs x EnergyTable::mac
  double sram = 0;    // SRAM reads and writes
  double dram = 0;    // DRAM (off-chip) reads and writes
  double vector = 0;  // vector-unit element-ops
  double total() const { return mac + sram + dram + vector; }
  EnergyBreakdown& operator+=(const EnergyBreakdown& o);
  nlohmann::json to_json() const;
};

struct OpCost {
  // cycles = compute_cycles + stall_cycles. compute_cycles is the stall-free count (for a
  // systolic GEMM exactly SCALE-Sim v2's); stall_cycles the extra cycles spent waiting for
  // DRAM when the bandwidth cannot keep up (see each model for how it is counted).
  int64_t cycles = 0;
  int64_t compute_cycles = 0;
  int64_t stall_cycles = 0;
  int64_t macs = 0;        // multiply-accumulates the op needs (useful work only)
  int64_t vector_ops = 0;  // element-ops of the vector unit (or the array doing vector work)
  // cycles x peak MACs per cycle of the device's array (idle or not: a vector op leaves it
  // idle), so that any total keeps utilization = macs / pe_cycles.
  double pe_cycles = 0;
  int64_t sram_reads = 0;  // words
  int64_t sram_writes = 0;
  int64_t dram_reads = 0;
  int64_t dram_writes = 0;
  EnergyBreakdown energy;

  // macs / pe_cycles: for one GEMM on an R x C array, MACs / (cycles * R * C).
  double utilization() const { return pe_cycles > 0 ? static_cast<double>(macs) / pe_cycles : 0.0; }
  double energy_pj() const { return energy.total(); }
  // Microseconds at `clock_mhz`.
  double microseconds(double clock_mhz) const { return static_cast<double>(cycles) / clock_mhz; }

  // Sets energy from the counts and the table (what every model calls last).
  void price(const EnergyTable& table);
  // Adds compute cycles, stall cycles and pe_cycles for an op on `spec`'s array: the stall
  // is the DRAM time (traffic / bandwidth) beyond compute_cycles, assuming the transfers
  // overlap compute perfectly (double buffering).
  void add_stalls(const AcceleratorSpec& spec);

  OpCost& operator+=(const OpCost& o);
  // `times` identical ops one after another (a batch of GEMMs, the groups of a conv).
  OpCost repeated(int64_t times) const;
  nlohmann::json to_json() const;
};

OpCost operator+(OpCost a, const OpCost& b);

}  // namespace strata::accel
