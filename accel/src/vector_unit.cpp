#include "strata/accel/vector_unit.h"

#include <cmath>

#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

VectorUnit::VectorUnit(AcceleratorSpec spec) : spec_(std::move(spec)) {}

int64_t VectorUnit::words(int64_t bytes) const {
  return core::checked_ceil_div(bytes, spec_.word_bytes, "words");
}

OpCost VectorUnit::elementwise(int64_t elements, double ops_per_element, int64_t bytes_in,
                               int64_t bytes_out) const {
  STRATA_CHECK(elements >= 0 && ops_per_element >= 0 && bytes_in >= 0 && bytes_out >= 0,
               "vector op: negative size (elements ", elements, ", ops per element ",
               ops_per_element, ", bytes ", bytes_in, " in, ", bytes_out, " out)");
  OpCost c;
  c.vector_ops = core::checked_ceil(static_cast<double>(elements) * ops_per_element, "vector ops");
  c.compute_cycles = core::checked_ceil_div(c.vector_ops, spec_.vector_lanes, "vector cycles");
  c.dram_reads = words(bytes_in);
  c.dram_writes = words(bytes_out);
  c.add_stalls(spec_);
  c.price(spec_.energy);
  return c;
}

OpCost VectorUnit::copy(int64_t bytes) const {
  STRATA_CHECK(bytes >= 0, "copy: got ", bytes, " bytes, expected >= 0");
  OpCost c;
  c.dram_reads = c.dram_writes = words(bytes);
  c.compute_cycles = core::checked_ceil_div(c.dram_reads, spec_.vector_lanes, "copy cycles");
  c.add_stalls(spec_);
  c.price(spec_.energy);
  return c;
}

}  // namespace strata::accel
