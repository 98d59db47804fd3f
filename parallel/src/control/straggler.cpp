#include "strata/parallel/control/straggler.h"

#include <algorithm>
#include <cstdio>
#include <map>

namespace strata::parallel {
namespace {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string seconds_text(double s) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f s", s);
  return text;
}

// The rank's busy seconds per step not in any recorded kind (the kinds overlap when
// entries nest, so this is a lower bound; 0 when they cover it all).
double unrecorded(const nlohmann::json& profile) {
  double recorded = 0;
  for (const auto& [kind, seconds] : profile["by_kind"].items()) recorded += seconds.get<double>();
  return std::max(0.0, profile["busy_s"].get<double>() - recorded);
}

const char* const kUnrecorded = "outside recorded operations (the model's code, data loading)";

}  // namespace

std::string StragglerReport::line() const {
  char ratio_text[32];
  std::snprintf(ratio_text, sizeof(ratio_text), "%.1fx", ratio());
  std::string out = "rank " + std::to_string(rank) + " (";
  if (node >= 0) out += "node " + std::to_string(node) + ", ";
  out += "host " + host + ") is a straggler: " + seconds_text(busy_s) +
         " of work per step against " + seconds_text(others_busy_s) + " on the other ranks (" +
         ratio_text + ", last " + std::to_string(steps) + " steps); its extra " +
         seconds_text(where_excess_s) + " per step is in " + where;
  return out;
}

nlohmann::json StragglerReport::to_json() const {
  return {{"event", "straggler"}, {"rank", rank},     {"node", node},
          {"host", host},         {"busy_s", busy_s}, {"others_busy_s", others_busy_s},
          {"ratio", ratio()},     {"where", where},   {"where_excess_s", where_excess_s},
          {"steps", steps}};
}

namespace {

// The pipeline stages a rank runs, from its kinds ("F stage 1", ...): ranks compare only
// with ranks of the same role, since stages differ in cost by design (balancing them is
// --balance's business, not a straggler).
std::string role_of(const nlohmann::json& profile) {
  std::string role;
  const std::string marker = " stage ";
  for (const auto& [kind, seconds] : profile["by_kind"].items()) {
    const size_t at = kind.rfind(marker);
    if (at == std::string::npos) continue;
    const std::string stage = kind.substr(at + marker.size());
    if (role.find("," + stage + ",") == std::string::npos) role += "," + stage + ",";
  }
  return role;
}

// The slowest of `ranks` (one role), if it is a straggler against the others.
std::optional<StragglerReport> straggler_among(const std::vector<nlohmann::json>& profiles,
                                               const std::vector<int>& ranks,
                                               const StragglerOptions& options) {
  const auto busy = [&](int r) { return profiles[static_cast<size_t>(r)]["busy_s"].get<double>(); };
  const int slowest = *std::max_element(ranks.begin(), ranks.end(),
                                        [&](int a, int b) { return busy(a) < busy(b); });
  const nlohmann::json& profile = profiles[static_cast<size_t>(slowest)];
  std::vector<double> others_busy, others_unrecorded;
  std::map<std::string, std::vector<double>> others_by_kind;
  for (int r : ranks) {
    if (r == slowest) continue;
    const auto& p = profiles[static_cast<size_t>(r)];
    others_busy.push_back(busy(r));
    others_unrecorded.push_back(unrecorded(p));
    for (const auto& [kind, seconds] : p["by_kind"].items())
      others_by_kind[kind].push_back(seconds.get<double>());
  }
  const double others = median(others_busy);
  if (busy(slowest) <= (1 + options.threshold()) * others ||
      busy(slowest) - others < options.min_excess())
    return std::nullopt;

  StragglerReport report;
  report.rank = slowest;
  report.host = profile.value("host", std::string("?"));
  report.node = profile.value("node", -1);
  report.busy_s = busy(slowest);
  report.others_busy_s = others;
  report.steps = profile["steps"].get<int64_t>();
  report.where = kUnrecorded;
  report.where_excess_s = unrecorded(profile) - median(others_unrecorded);
  for (const auto& [kind, seconds] : profile["by_kind"].items()) {
    // A rank that never records this kind spent 0 s in it.
    auto theirs = others_by_kind[kind];
    theirs.resize(others_busy.size(), 0.0);
    const double kind_excess = seconds.get<double>() - median(theirs);
    if (kind_excess > report.where_excess_s) {
      report.where = kind;
      report.where_excess_s = kind_excess;
    }
  }
  return report;
}

}  // namespace

std::optional<StragglerReport> find_straggler(const std::vector<nlohmann::json>& profiles,
                                              const StragglerOptions& options) {
  if (options.threshold() <= 0) return std::nullopt;
  // The ranks with enough steps to judge, by role.
  std::map<std::string, std::vector<int>> roles;
  for (size_t r = 0; r < profiles.size(); ++r) {
    const auto& p = profiles[r];
    if (p.is_object() && p.value("steps", int64_t{0}) >= options.min_steps())
      roles[role_of(p)].push_back(static_cast<int>(r));
  }
  std::optional<StragglerReport> worst;
  for (const auto& [role, ranks] : roles) {
    if (ranks.size() < 2) continue;
    auto found = straggler_among(profiles, ranks, options);
    if (found && (!worst || found->ratio() > worst->ratio())) worst = std::move(found);
  }
  return worst;
}

std::optional<StragglerReport> StragglerDetector::observe(
    const std::vector<nlohmann::json>& profiles) {
  const auto found = find_straggler(profiles, options_);
  const int rank = found ? found->rank : -1;
  streak_ = rank == candidate_ ? streak_ + 1 : 1;
  candidate_ = rank;
  if (rank < 0 || streak_ < options_.confirmations()) {
    // Recovered: a later episode of the same rank is news again.
    if (reported_ >= 0 && rank != reported_ && streak_ >= options_.confirmations()) reported_ = -1;
    return std::nullopt;
  }
  if (rank == reported_) return std::nullopt;
  reported_ = rank;
  return found;
}

}  // namespace strata::parallel
