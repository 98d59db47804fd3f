#pragma once
// The vector unit beside the array: element-wise, reduction and data-movement ops.
//
//   compute_cycles = ceil(elements * ops_per_element / lanes)   (a copy: ceil(words / lanes))
//   dram_reads     = words in,  dram_writes = words out          (words of spec.word_bytes)
//   stall_cycles   = DRAM time beyond compute (OpCost::add_stalls)
//
// Operands are read from and written back to DRAM: between the ops of a LibTorch program
// nothing says a tensor stays on chip, so every op pays for its traffic. Nothing is free;
// a copy costs its traffic and its cycles even with no arithmetic.

#include <cstdint>

#include "strata/accel/accel_spec.h"
#include "strata/accel/op_cost.h"

namespace strata::accel {

class VectorUnit {
 public:
  explicit VectorUnit(AcceleratorSpec spec);

  // elements x ops_per_element element-ops reading bytes_in and writing bytes_out.
  OpCost elementwise(int64_t elements, double ops_per_element, int64_t bytes_in,
                     int64_t bytes_out) const;
  // Moving `bytes` (read, then written).
  OpCost copy(int64_t bytes) const;
  // Bytes to whole words of the spec.
  int64_t words(int64_t bytes) const;
  const AcceleratorSpec& spec() const { return spec_; }

 private:
  AcceleratorSpec spec_;
};

}  // namespace strata::accel
