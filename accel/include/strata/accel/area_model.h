#pragma once
// Silicon area of an accelerator design from its spec, for design-space searches that
// trade area against latency and energy (examples/accel_codesign, docs/accel-codesign.md):
//
//   area = PEs x mac_um2  +  vector lanes x add_um2  +  on-chip SRAM KiB x sram_mm2_per_kib
//          + overhead_mm2
//
// The default figures (AreaTable::estimate_45nm) are APPROXIMATIONS at 45 nm, the node of
// the energy table, kept as data a user can replace:
//   mac_um2           multiplier + adder of the datatype, Horowitz, "Computing's energy
//                     problem", ISSCC 2014 (area table, 45 nm): 8-bit int multiply 282 um^2,
//                     add 36; fp16 multiply 1640, add 1360; fp32 multiply 7700, add 4184.
//                     A PE's pipeline registers and wiring are not counted (a lower bound).
//   add_um2           one adder of the datatype per vector lane (same source).
//   sram_mm2_per_kib  0.01 mm^2 per KiB: the rule of thumb of ~600 lambda^2 per SRAM bit
//                     including its share of decoders and sense amplifiers (D. J. Greaves,
//                     "System on Chip Design", Cambridge, 45 nm SRAM slide): 600 x (45 nm)^2
//                     x 8192 bits = 0.00995 mm^2. Small macros are less dense; an estimate.
//   overhead_mm2      0.2 mm^2 of control, DMA and I/O: a stated guess, not a published figure.
// PIM designs add MAC units to DRAM dies; their area is not modelled (strata::Error). Each
// template prices its own design (AcceleratorTemplate::area, accelerator_template.h).

#include <cstdint>

#include <nlohmann/json.hpp>

#include "strata/accel/accel_spec.h"

namespace strata::accel {

struct AreaBreakdown {
  double pe_mm2 = 0;
  double vector_mm2 = 0;
  double sram_mm2 = 0;
  double overhead_mm2 = 0;
  double total_mm2() const { return pe_mm2 + vector_mm2 + sram_mm2 + overhead_mm2; }
  nlohmann::json to_json() const;
};

struct AreaTable {
  double mac_um2 = 0;           // one PE's multiply-accumulate unit
  double add_um2 = 0;           // one vector-unit lane
  double sram_mm2_per_kib = 0;  // on-chip buffers
  double overhead_mm2 = 0;      // fixed: control, DMA, I/O

  // The 45 nm estimates above for 1-, 2- or 4-byte words (int8, fp16, fp32); strata::Error
  // naming the word size otherwise.
  static AreaTable estimate_45nm(int64_t word_bytes);
  // `base` with any of "mac_um2", "add_um2", "sram_mm2_per_kib", "overhead_mm2" replaced;
  // strata::Error naming an unknown field or a negative or non-numeric value.
  static AreaTable from_json(const nlohmann::json& json, AreaTable base);
  nlohmann::json to_json() const;
  // `macs` MAC units, `lanes` vector lanes, `sram_kib` of buffers and the overhead.
  AreaBreakdown price(int64_t macs, int64_t lanes, double sram_kib) const;
};

// The area of `spec` priced with `table` by its template; strata::Error for a template with
// no area model (pim) or a spec that does not validate.
AreaBreakdown accelerator_area(const AcceleratorSpec& spec, const AreaTable& table);
// The same with AreaTable::estimate_45nm(spec.word_bytes).
AreaBreakdown accelerator_area(const AcceleratorSpec& spec);

}  // namespace strata::accel
