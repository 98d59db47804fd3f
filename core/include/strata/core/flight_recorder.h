#pragma once
// The flight recorder: what this process started and finished last (pipeline
// instructions, communicator operations, checkpoint writes, optimizer steps), so that a
// hang can be explained by what every rank was doing. The heartbeat watchdog
// (strata/parallel/control/watchdog.h) publishes its summary and prints it when the job aborts.
//
//   auto& recorder = strata::core::FlightRecorder::global();
//   {
//     strata::core::FlightRecordScope scope("recv from rank 0 tag 7 (4096 bytes)", /*peer=*/0);
//     work->wait();
//   }  // finished here
//
// Entries in progress are kept until they finish, however many others come and go; the
// last `capacity` finished ones are kept in the order they finished. Thread-safe; a begin
// and an end cost a mutex and a string each.
//
// It also keeps running totals for the straggler report (strata/core/step_profile.h): the
// seconds of finished entries by kind (a short name such as "forward" or "F stage 1";
// entries nest, so kinds overlap), and the seconds threads spent blocked waiting for
// communication (add_blocked: the recording communicator's wait()).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::core {

struct FlightRecord {
  uint64_t sequence = 0;    // 1, 2, ... in the order the entries began
  std::string description;  // "recv-activation stage 1 micro-batch 0 from rank 0", ...
  std::string kind;         // what totals() sums it under: "recv", "F stage 1", ...
  int peer = -1;            // the rank this entry waits for, -1 for none (or all of a group)
  std::chrono::steady_clock::time_point start, end;
  bool finished = false;
};

class FlightRecorder {
 public:
  explicit FlightRecorder(size_t capacity = 64);

  // The process's recorder, which strata's executors, communicators and checkpoints use.
  static FlightRecorder& global();

  // Starts an entry; returns its sequence number for end(). An empty `kind` is the
  // description's first word.
  uint64_t begin(std::string description, int peer = -1, std::string kind = "");
  // Finishes the entry; an unknown sequence number is ignored (ended already).
  void end(uint64_t sequence);

  // The finished entries kept (oldest first), and those in progress (oldest first).
  std::vector<FlightRecord> finished() const;
  std::vector<FlightRecord> in_progress() const;
  size_t capacity() const { return capacity_; }

  // A summary for other ranks: {"finished": [...the last `last` finished...],
  // "in_progress": [...]}, each entry {"seq", "what", "peer", "started_s_ago",
  // "seconds"} (seconds: duration, or for an entry in progress, how long it has run).
  nlohmann::json summary(size_t last = 8) const;

  // Seconds of the finished entries so far, by kind.
  std::map<std::string, double> totals() const;
  // Threads of this process spent `seconds` blocked waiting for communication.
  void add_blocked(double seconds);
  double blocked_seconds() const;

 private:
  size_t capacity_;
  mutable std::mutex mutex_;
  uint64_t next_ = 1;
  std::deque<FlightRecord> finished_;
  std::map<uint64_t, FlightRecord> open_;
  std::map<std::string, double> totals_;
  double blocked_seconds_ = 0;
};

// Begins an entry on construction and ends it on destruction (exceptions included).
class FlightRecordScope {
 public:
  FlightRecordScope(std::string description, int peer = -1, std::string kind = "",
                    FlightRecorder& recorder = FlightRecorder::global())
      : recorder_(recorder),
        sequence_(recorder.begin(std::move(description), peer, std::move(kind))) {}
  ~FlightRecordScope() { recorder_.end(sequence_); }
  FlightRecordScope(const FlightRecordScope&) = delete;
  FlightRecordScope& operator=(const FlightRecordScope&) = delete;

 private:
  FlightRecorder& recorder_;
  uint64_t sequence_;
};

}  // namespace strata::core
