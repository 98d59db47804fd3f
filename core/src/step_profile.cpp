#include "strata/core/step_profile.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "strata/core/error.h"

namespace strata::core {
namespace {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid), values.end());
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  return (upper +
          *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid))) /
         2;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

int node_rank() {
  const char* value = std::getenv("STRATA_NODE_RANK");
  return value != nullptr ? std::atoi(value) : -1;
}

}  // namespace

StepProfile::StepProfile(size_t window, FlightRecorder& recorder)
    : window_(window), recorder_(recorder) {
  STRATA_CHECK(window > 0, "step profile window: got 0 steps, expected at least 1");
}

StepProfile& StepProfile::global() {
  // Never destroyed: the watchdog's thread may read it while the process exits.
  static auto* profile = new StepProfile();
  return *profile;
}

void StepProfile::begin_step() {
  auto totals = recorder_.totals();
  const double blocked = recorder_.blocked_seconds();
  std::lock_guard<std::mutex> lock(mutex_);
  totals_at_start_ = std::move(totals);
  blocked_at_start_ = blocked;
  in_step_ = true;
  start_ = std::chrono::steady_clock::now();
}

void StepProfile::end_step() {
  const auto now = std::chrono::steady_clock::now();
  const auto totals = recorder_.totals();
  const double blocked = recorder_.blocked_seconds();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!in_step_) return;
  in_step_ = false;
  Step step;
  step.wall_s = std::chrono::duration<double>(now - start_).count();
  step.blocked_s = std::min(step.wall_s, blocked - blocked_at_start_);
  for (const auto& [kind, seconds] : totals) {
    const auto before = totals_at_start_.find(kind);
    const double spent = seconds - (before == totals_at_start_.end() ? 0.0 : before->second);
    if (spent > 0) step.by_kind[kind] = spent;
  }
  steps_.push_back(std::move(step));
  if (steps_.size() > window_) steps_.pop_front();
}

nlohmann::json StepProfile::summary() const {
  static const std::string host = host_name();
  static const int node = node_rank();
  std::vector<double> wall, busy, blocked;
  std::map<std::string, double> by_kind;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Step& s : steps_) {
      wall.push_back(s.wall_s);
      blocked.push_back(s.blocked_s);
      busy.push_back(s.wall_s - s.blocked_s);
      for (const auto& [kind, seconds] : s.by_kind) by_kind[kind] += seconds;
    }
  }
  nlohmann::json kinds = nlohmann::json::object();
  for (const auto& [kind, seconds] : by_kind)
    kinds[kind] = seconds / static_cast<double>(wall.size());
  return {{"steps", wall.size()},
          {"wall_s", median(wall)},
          {"busy_s", median(busy)},
          {"blocked_s", median(blocked)},
          {"by_kind", kinds},
          {"host", host},
          {"node", node}};
}

}  // namespace strata::core
