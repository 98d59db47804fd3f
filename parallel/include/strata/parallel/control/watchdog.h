#pragma once
// The heartbeat watchdog: turns a hang into a diagnosis and a clean abort.
//
// On every rank a thread, every heartbeat interval, writes to the control store
// `heartbeat/<rank>` (a counter) and `recorder/<rank>` (this rank's flight-recorder
// summary), and reads every other rank's. When a rank's counter has not moved for
// `timeout`, or a rank has had a flight-recorder entry in progress (a receive, a
// collective, a pipeline instruction, ...) for longer than `timeout`, the watchdog that
// sees it first sets `abort` in the store with the reason. Every rank's watchdog then sees
// `abort` (or finds the store gone) and ends its process with `exit_code`, even when the
// main thread is stuck inside MPI_Recv; the rank that detected the hang prints the report
// (for each rank: the entries in progress and which rank they wait for, the last finished
// ones, the time since its last heartbeat) and writes it as JSON when asked. No hang
// outlives `timeout` plus a few heartbeat intervals. See docs/reliability.md.
//
// With each heartbeat it also publishes `steps/<rank>`, this rank's step profile
// (strata/core/step_profile.h); rank 0's watchdog compares them and keeps a report of each
// straggler it confirms (strata/parallel/control/straggler.h) for take_straggler_reports.
//
// A rank that fails with an error (an exception its program did not handle) ends the job
// another way: post_error_abort claims the abort, prints its one line and sets `abort`
// with `abort/kind` = "error"; every other watchdog then leaves silently with
// kErrorExitCode (no report: nothing hung), within a heartbeat.
//
//   strata::parallel::Watchdog watchdog(store, rank, world_size,
//       strata::parallel::WatchdogOptions().timeout(std::chrono::seconds(60)));
//   ... training ...
//   watchdog.stop();  // this rank finished: the others stop expecting its heartbeat

#include <torch/arg.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/core/flight_recorder.h"
#include "strata/core/step_profile.h"
#include "strata/parallel/control/control_store.h"
#include "strata/parallel/control/straggler.h"

namespace strata::parallel {

// What a watchdog saw when the job aborted.
struct WatchdogAbort {
  std::string reason;          // one line: what hung, where, for how long
  bool detected_here = false;  // this rank's watchdog set `abort`
  nlohmann::json report;       // {"reason", "detected_by", "timeout_s", "ranks": [...]}
  // Another rank failed with an error (post_error_abort): `reason` is its line, which that
  // rank printed; nothing hung and there is no report.
  bool error = false;
};

// The report as text for people: the reason, then per rank its heartbeat age, its entries
// in progress (with the rank each waits for) and its last finished entries.
std::string format_hang_report(const nlohmann::json& report);

// The exit status of a process the watchdog ends.
constexpr int kWatchdogExitCode = 3;
// The exit status of every rank of a job that one rank's error ended (the status with which
// programs report an error: strata::programs::run_main).
constexpr int kErrorExitCode = 1;

// Ends the job because this rank failed: claims the store's abort (`abort/by`, the same
// claim a watchdog makes for a hang) and, when this rank won it, calls `announce` (print
// the one line there: before any other rank learns of the abort and exits, so that no
// launcher stops this rank first) and sets `abort` = `message` with `abort/kind` = "error".
// Returns whether this rank won; a rank that lost stays silent (another rank's error or a
// hang report speaks for the job). Every watchdog of the job then leaves without a report.
bool post_error_abort(ControlStoreClient& store, int rank, const std::string& message,
                      const std::function<void()>& announce);

// Whether post_error_abort ended the job (so its line is printed), and with `rank` >= 0,
// whether that rank took part in it (it posted the error or left after it): a launcher
// then adds nothing about that rank; a rank that died otherwise is news. False when the
// store does not answer.
bool error_abort_posted(ControlStoreClient& store, int rank = -1);

// Rank `rank` leaving a job that an error ended: counts itself out (`abort/left`) and,
// with `wait`, waits (at most 5 heartbeat intervals, at least 1 s) until every rank has.
// The process that hosts the store waits, so that the store does not vanish before the
// others have seen the abort; so does the rank that posted the error, so that a launcher
// sees first a rank that died of something else (whose death may have caused the error).
void leave_after_error_abort(ControlStoreClient& store, int rank, int world_size, bool wait,
                             std::chrono::milliseconds heartbeat_interval);

struct WatchdogOptions {
  // How long an entry may stay in progress, and a rank may go without a heartbeat.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::seconds(300);
  TORCH_ARG(std::chrono::milliseconds, heartbeat_interval) = std::chrono::seconds(1);
  // Where the detecting rank writes the report as JSON (empty: nowhere).
  TORCH_ARG(std::string, hang_report) = "";
  // Called (on the watchdog's thread) instead of printing and ending the process; for
  // tests and for programs that abort their own way.
  TORCH_ARG(std::function<void(const WatchdogAbort&)>, on_abort) = nullptr;
  TORCH_ARG(int, exit_code) = kWatchdogExitCode;
  // On SIGTERM (mpirun and strata-run send it to the other ranks when one rank dies),
  // print this rank's report (what it was doing, which rank it waited for) before exiting.
  // Only the first watchdog of a process installs the handler.
  TORCH_ARG(bool, report_on_terminate) = true;
  // The store lives in this process (rank 0 under mpirun): on an error abort it stays until
  // the other ranks have left (leave_after_error_abort).
  TORCH_ARG(bool, hosts_store) = false;
  // Rank 0 looks for stragglers in the ranks' step profiles (threshold 0: not at all).
  TORCH_ARG(StragglerOptions, straggler) = {};
};

class Watchdog {
 public:
  // Starts the thread. `store` is this rank's connection to the job's control store
  // (the watchdog makes its calls on it; give it a connection of its own).
  Watchdog(std::shared_ptr<ControlStoreClient> store, int rank, int world_size,
           WatchdogOptions options = {},
           core::FlightRecorder& recorder = core::FlightRecorder::global(),
           core::StepProfile& profile = core::StepProfile::global());
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Marks this rank finished (`done/<rank>`: the others stop expecting its heartbeat) and
  // stops the thread. Idempotent.
  void stop();
  // True once the job aborted (only with on_abort; otherwise the process is gone).
  bool aborted() const { return aborted_; }
  int rank() const { return rank_; }
  // On rank 0: the stragglers confirmed since the last call (each once per episode).
  std::vector<StragglerReport> take_straggler_reports();

 private:
  void loop();
  void beat();
  // Rank 0: reads every rank's step profile and feeds the straggler detector.
  void check_stragglers();
  // The reason to abort, if any rank hangs.
  std::optional<std::string> check_ranks();
  nlohmann::json build_report(const std::string& reason, int detected_by);
  void abort(const std::string& reason, bool detected_here);
  // Another rank set `abort`: a hang it detected (abort()) or its error.
  void follow_abort(const std::string& reason);
  // Another rank posted an error abort (post_error_abort): leave without a word.
  void follow_error_abort(const std::string& reason);
  // The line of another rank's error abort, if the job's abort is one; nullopt too when
  // the store does not answer.
  std::optional<std::string> posted_error();
  void lost_store(const std::string& error);
  // A report of this rank alone, when the others' state is stale or unknown.
  nlohmann::json this_rank_report(const std::string& reason);
  // Prints this_rank_report (or calls on_abort) and ends the process.
  void report_this_rank_and_exit(const std::string& reason);
  // The thread that waits for SIGTERM (see report_on_terminate).
  void wait_for_terminate();

  std::shared_ptr<ControlStoreClient> store_;
  int rank_, world_size_;
  WatchdogOptions options_;
  core::FlightRecorder& recorder_;
  core::StepProfile& profile_;
  StragglerDetector stragglers_;
  std::vector<StragglerReport> straggler_reports_;  // guarded by mutex_
  uint64_t beats_ = 0;
  std::chrono::steady_clock::time_point started_;
  // Per rank: the last heartbeat counter seen, when it last moved, its last summary.
  std::vector<int64_t> last_beat_;
  std::vector<std::chrono::steady_clock::time_point> last_change_;
  std::vector<nlohmann::json> summaries_;
  std::vector<bool> done_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::atomic<bool> aborted_{false};
  std::thread thread_;
  bool owns_terminate_ = false;  // installed the SIGTERM handler
  std::thread terminate_thread_;
};

}  // namespace strata::parallel
