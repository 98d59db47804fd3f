#include "strata/core/fault_injection.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include <unistd.h>

#include "strata/core/error.h"

namespace strata::core {
namespace {

struct Fault {
  std::string point;  // empty: no fault armed
  long long nth = 0;
  long long reached = 0;
  bool error = false;     // raise strata::Error instead of dying
  long long slow_ms = 0;  // > 0: sleep this long at every arrival from the n-th on
};

// "slow=<ms>": the milliseconds, or 0 when `action` is not of that form.
long long slow_milliseconds(const std::string& action) {
  const std::string prefix = "slow=";
  if (action.compare(0, prefix.size(), prefix) != 0) return 0;
  try {
    size_t used = 0;
    const long long ms = std::stoll(action.substr(prefix.size()), &used);
    return used == action.size() - prefix.size() && ms > 0 && ms <= 3'600'000 ? ms : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

Fault parse_fault() {
  Fault fault;
  const char* spec = std::getenv("STRATA_FAULT");
  if (spec == nullptr || *spec == '\0') return fault;
  const std::string text = spec;
  const size_t first = text.find(':');
  STRATA_CHECK(first != std::string::npos && first > 0, "STRATA_FAULT '", text,
               "': expected <point>:<n>[:<rank>[:error|:slow=<ms>]]");
  const size_t second = text.find(':', first + 1);
  const std::string nth =
      text.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
  try {
    fault.nth = std::stoll(nth);
  } catch (const std::exception&) {
    fault.nth = 0;
  }
  STRATA_CHECK(fault.nth >= 1, "STRATA_FAULT '", text, "': count '", nth,
               "', expected a positive number");
  if (second != std::string::npos) {
    const size_t third = text.find(':', second + 1);
    const std::string rank = text.substr(
        second + 1, third == std::string::npos ? std::string::npos : third - second - 1);
    const std::string action = third == std::string::npos ? "" : text.substr(third + 1);
    fault.error = action == "error";
    fault.slow_ms = slow_milliseconds(action);
    STRATA_CHECK(action.empty() || fault.error || fault.slow_ms > 0, "STRATA_FAULT '", text,
                 "': action '", action,
                 "', expected error, slow=<ms> (1 to 3600000) or none (SIGKILL)");
    if (!rank.empty() && std::stoi(rank) != launcher_rank()) return fault;  // another rank's
  }
  fault.point = text.substr(0, first);
  return fault;
}

}  // namespace

int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "STRATA_RANK"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return -1;
}

void fault_point(const char* point) {
  static std::mutex mutex;
  static Fault fault = parse_fault();
  if (fault.point.empty()) return;
  std::unique_lock<std::mutex> lock(mutex);
  if (fault.point != point) return;
  ++fault.reached;
  if (fault.slow_ms > 0) {
    // A straggler: every arrival from the n-th on is late (the lock is released first,
    // so that other threads reaching other points are not slowed).
    if (fault.reached < fault.nth) return;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(fault.slow_ms));
    return;
  }
  if (fault.reached != fault.nth) return;
  STRATA_CHECK(!fault.error, "injected fault at ", point, " #", fault.nth, " on this rank");
  std::fprintf(stderr, "strata: injected fault: killing pid %d at %s #%lld\n",
               static_cast<int>(::getpid()), point, fault.nth);
  std::fflush(stderr);
  std::raise(SIGKILL);
}

}  // namespace strata::core
