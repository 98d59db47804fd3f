#include "strata/core/flight_recorder.h"

#include <algorithm>

#include "strata/core/error.h"

namespace strata::core {
namespace {

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

nlohmann::json to_json(const FlightRecord& r, std::chrono::steady_clock::time_point now) {
  return {{"seq", r.sequence},
          {"what", r.description},
          {"peer", r.peer},
          {"started_s_ago", seconds_between(r.start, now)},
          {"seconds", seconds_between(r.start, r.finished ? r.end : now)}};
}

}  // namespace

FlightRecorder::FlightRecorder(size_t capacity) : capacity_(capacity) {
  STRATA_CHECK(capacity > 0, "flight recorder capacity: got 0, expected at least 1");
}

FlightRecorder& FlightRecorder::global() {
  // Never destroyed: threads may still record while the process exits.
  static auto* recorder = new FlightRecorder();
  return *recorder;
}

uint64_t FlightRecorder::begin(std::string description, int peer, std::string kind) {
  if (kind.empty()) kind = description.substr(0, description.find(' '));
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t sequence = next_++;
  FlightRecord& r = open_[sequence];
  r.sequence = sequence;
  r.description = std::move(description);
  r.kind = std::move(kind);
  r.peer = peer;
  r.start = now;
  return sequence;
}

void FlightRecorder::end(uint64_t sequence) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = open_.find(sequence);
  if (it == open_.end()) return;
  it->second.end = now;
  it->second.finished = true;
  totals_[it->second.kind] += seconds_between(it->second.start, now);
  finished_.push_back(std::move(it->second));
  open_.erase(it);
  if (finished_.size() > capacity_) finished_.pop_front();
}

std::vector<FlightRecord> FlightRecorder::finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {finished_.begin(), finished_.end()};
}

std::vector<FlightRecord> FlightRecorder::in_progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<FlightRecord> out;
  out.reserve(open_.size());
  for (const auto& [sequence, record] : open_) out.push_back(record);
  return out;
}

nlohmann::json FlightRecorder::summary(size_t last) const {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json finished = nlohmann::json::array();
  const size_t skip = finished_.size() > last ? finished_.size() - last : 0;
  for (size_t i = skip; i < finished_.size(); ++i) finished.push_back(to_json(finished_[i], now));
  nlohmann::json open = nlohmann::json::array();
  for (const auto& [sequence, record] : open_) open.push_back(to_json(record, now));
  return {{"finished", finished}, {"in_progress", open}};
}

std::map<std::string, double> FlightRecorder::totals() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return totals_;
}

void FlightRecorder::add_blocked(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  blocked_seconds_ += seconds;
}

double FlightRecorder::blocked_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return blocked_seconds_;
}

}  // namespace strata::core
