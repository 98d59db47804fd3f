#include "strata/core/memory.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include <spdlog/fmt/fmt.h>

#include "strata/core/error.h"

namespace strata::core {
namespace {

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// cgroup v2 (memory.max, "max" when unlimited) or v1 (memory.limit_in_bytes, a huge number).
int64_t cgroup_limit() {
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string text;
    if (!(in >> text) || text == "max") continue;
    try {
      const long long limit = std::stoll(text);
      if (limit > 0) return static_cast<int64_t>(limit);
    } catch (const std::exception&) {  // not a number: no limit we can read
    }
  }
  return kNoLimit;
}

}  // namespace

int64_t physical_memory_bytes() {
  static const int64_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    const int64_t physical = pages > 0 && page > 0 ? saturating_product({pages, page}) : kNoLimit;
    return std::min(physical, cgroup_limit());
  }();
  return bytes;
}

std::string format_bytes(int64_t bytes) {
  if (bytes == kNoLimit) return "more than 8 EiB";
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  // Three significant digits at most: "1.6 TiB", "24 GiB", "512 MiB".
  return value < 10 ? fmt::format("{:.1f} {}", value, units[unit])
                    : fmt::format("{:.0f} {}", value, units[unit]);
}

int64_t saturating_product(std::initializer_list<int64_t> factors) {
  int64_t out = 1;
  for (const int64_t f : factors) {
    STRATA_CHECK(f >= 0, "saturating_product: factor ", f, ", expected >= 0");
    if (f == 0) return 0;
  }
  for (const int64_t f : factors)
    if (__builtin_mul_overflow(out, f, &out)) return kNoLimit;
  return out;
}

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t out = 0;
  return __builtin_add_overflow(a, b, &out) ? kNoLimit : out;
}

void check_fits(const std::string& what, int64_t bytes, int64_t limit) {
  STRATA_CHECK(bytes <= limit, what, " needs ", format_bytes(bytes), ", more than the ",
               format_bytes(limit), " of this machine");
}

}  // namespace strata::core
