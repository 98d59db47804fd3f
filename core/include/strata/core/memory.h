#pragma once
// Memory a request would need, estimated and refused before anything is allocated.
//
// A size from the command line (--micro-batches, --calibration, --batch, --d) can ask for more
// memory than the machine has; allocating it ends in std::bad_alloc, LibTorch's
// "[enforce fail at alloc_cpu.cpp:75]" or the kernel killing the process after it has taken
// every page. Programs estimate the bytes first and call check_fits, which says what asked
// for how much:
//
//   core::check_fits(fmt::format("--micro-batches {} with --ranks {}", m, k) + " (the schedule)",
//                    core::saturating_product({k, m, 7, 64}));
//   -> "--micro-batches 2000000000 with --ranks 2 (the schedule) needs 1.6 TiB, more than the
//       23 GiB of this machine"

#include <cstdint>
#include <initializer_list>
#include <string>

namespace strata::core {

// Bytes of memory this process may use: the machine's physical memory, or the cgroup's limit
// when that is lower.
int64_t physical_memory_bytes();

// "512 B", "3.0 KiB", "96 GiB", "1.6 TiB"; INT64_MAX reads "more than 8 EiB".
std::string format_bytes(int64_t bytes);

// The product of `factors` (all >= 0), or INT64_MAX when it does not fit: an estimate that
// saturates is still refused by check_fits, with "more than 8 EiB".
int64_t saturating_product(std::initializer_list<int64_t> factors);
// a + b for sizes >= 0, INT64_MAX when it does not fit.
int64_t saturating_add(int64_t a, int64_t b);

// A strata::Error "<what> needs <bytes>, more than the <limit> of this machine" when `bytes`
// exceeds `limit` (default physical_memory_bytes()).
void check_fits(const std::string& what, int64_t bytes, int64_t limit = physical_memory_bytes());

}  // namespace strata::core
