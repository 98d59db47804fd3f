#pragma once
// Timelines in the Chrome Trace Event Format, which Perfetto (ui.perfetto.dev) and
// chrome://tracing open: each (pid, tid) pair is a row, each complete event a box on it.
// The pipeline executor records one row per stage; any module that times work can add its
// own rows, and traces from several ranks merge into one file.
//
//   {"traceEvents": [
//      {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "stage 0"}},
//      {"name": "thread_name", "ph": "M", "pid": 0, "tid": 1, "args": {"name": "compute"}},
//      {"name": "forward", "cat": "compute", "ph": "X", "pid": 0, "tid": 1,
//       "ts": 12.5, "dur": 300.0, "args": {"microbatch": 3}}],
//    "displayTimeUnit": "ms"}
//
// Times are microseconds (the format's unit) from any origin the caller picks; events on
// one row should share it.

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace strata::core {

class ChromeTrace {
 public:
  // A box named `name` on row (pid, tid) from start_us to start_us + duration_us.
  // `args` (a JSON object, or null for none) shows when the box is selected. Raises
  // strata::Error for a negative or non-finite time, or args that are not an object.
  void add_complete(const std::string& name, const std::string& category, int pid, int tid,
                    double start_us, double duration_us, const nlohmann::json& args = {});
  // Labels for the rows; naming a process or thread again renames it.
  void set_process_name(int pid, const std::string& name);
  void set_thread_name(int pid, int tid, const std::string& name);

  // Metadata events first (process names, then thread names, by pid and tid), then the
  // complete events in the order they were added.
  nlohmann::json to_json() const;
  // The inverse of to_json(), for traces that travel between ranks as text: reads the
  // metadata and complete events of a {"traceEvents": [...]} object and skips other
  // events. Raises strata::Error naming the first event it cannot read.
  static ChromeTrace from_json(const nlohmann::json& json);
  // Writes to_json() to `<path>.tmp-<pid>` and renames it to `path` (creating missing
  // parent directories), so `path` is never a partial trace. Raises strata::Error naming
  // the path and the reason if it cannot be written.
  void write(const std::string& path) const;

  // All events of `traces`, in order. A process or thread named in several traces must
  // have the same name in each; different names raise strata::Error (two sources using
  // the same row would mix their events).
  static ChromeTrace merge(const std::vector<ChromeTrace>& traces);

  // The number of complete events.
  size_t size() const { return events_.size(); }
  bool empty() const { return events_.empty(); }

 private:
  struct Event {
    std::string name, category;
    int pid, tid;
    double start_us, duration_us;
    nlohmann::json args;
  };

  std::vector<Event> events_;
  std::map<int, std::string> process_names_;
  std::map<std::pair<int, int>, std::string> thread_names_;
};

}  // namespace strata::core
