#include "strata/parallel/control/watchdog.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <sstream>
#include <utility>

#include "strata/core/error.h"
#include "strata/core/output_files.h"

namespace strata::parallel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double seconds(std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; }

std::string fixed(double value, int digits = 1) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

std::string heartbeat_key(int rank) { return "heartbeat/" + std::to_string(rank); }
std::string recorder_key(int rank) { return "recorder/" + std::to_string(rank); }
std::string steps_key(int rank) { return "steps/" + std::to_string(rank); }
// An abort's kind ("error" for post_error_abort; missing for a hang), and the ranks that
// have left after an error abort.
const char* const kAbortKindKey = "abort/kind";
const char* const kAbortLeftKey = "abort/left";

}  // namespace

bool post_error_abort(ControlStoreClient& store, int rank, const std::string& message,
                      const std::function<void()>& announce) {
  const std::string me = std::to_string(rank);
  if (store.compare_set("abort/by", "", me) != me) return false;
  if (announce) announce();
  // The kind first: a watchdog that sees `abort` finds its kind already there.
  store.set(kAbortKindKey, "error");
  store.set("abort", message);
  return true;
}

bool error_abort_posted(ControlStoreClient& store, int rank) {
  try {
    if (store.try_get(kAbortKindKey) != "error") return false;
    const std::string me = std::to_string(rank);
    return rank < 0 || store.try_get("abort/by") == me ||
           store.check({std::string(kAbortLeftKey) + "/" + me});
  } catch (const std::exception&) {
    return false;
  }
}

void leave_after_error_abort(ControlStoreClient& store, int rank, int world_size, bool wait,
                             std::chrono::milliseconds heartbeat_interval) {
  try {
    store.set(std::string(kAbortLeftKey) + "/" + std::to_string(rank), "1");
    store.add(kAbortLeftKey, 1);
    if (!wait) return;
    const auto deadline =
        Clock::now() + std::max<Clock::duration>(5 * heartbeat_interval, std::chrono::seconds(1));
    while (Clock::now() < deadline) {
      const auto left = store.try_get(kAbortLeftKey);
      if (left && std::stoll(*left) >= world_size) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } catch (const std::exception&) {
    // The store is gone: nobody is left to wait for.
  }
}

std::string format_hang_report(const nlohmann::json& report) {
  std::ostringstream out;
  out << "strata watchdog: job aborted: " << report.value("reason", std::string("?"));
  if (report.contains("detected_by"))
    out << " (detected by rank " << report["detected_by"].get<int>() << ")";
  out << "\n";
  if (!report.contains("ranks")) return out.str();
  for (const auto& r : report["ranks"]) {
    out << "rank " << r["rank"].get<int>() << ": ";
    if (r.value("done", false)) {
      out << "finished its work\n";
      continue;
    }
    if (r.contains("last_heartbeat_s_ago") && !r["last_heartbeat_s_ago"].is_null()) {
      out << "last heartbeat " << fixed(r["last_heartbeat_s_ago"].get<double>()) << " s ago\n";
    } else {
      out << "no heartbeat seen\n";
    }
    const auto& summary = r.contains("recorder") ? r["recorder"] : nlohmann::json::object();
    const auto open = summary.value("in_progress", nlohmann::json::array());
    // A pipeline may have many transfers posted: the oldest entries and the newest (the
    // instruction the rank is in) explain a hang; the middle is elided.
    constexpr size_t kEnds = 3;
    for (size_t k = 0; k < open.size(); ++k) {
      if (open.size() > 2 * kEnds + 1 && k >= kEnds && k < open.size() - kEnds) {
        if (k == kEnds) out << "  ... " << open.size() - 2 * kEnds << " more in progress\n";
        continue;
      }
      const auto& e = open[k];
      out << "  in progress #" << e["seq"].get<uint64_t>() << " " << e["what"].get<std::string>()
          << ", for " << fixed(e["seconds"].get<double>()) << " s";
      const int peer = e["peer"].get<int>();
      if (peer >= 0) out << ": waits for rank " << peer;
      out << "\n";
    }
    for (const auto& e : summary.value("finished", nlohmann::json::array())) {
      out << "  finished    #" << e["seq"].get<uint64_t>() << " " << e["what"].get<std::string>()
          << " (" << fixed(1000.0 * e["seconds"].get<double>(), 2) << " ms, ended "
          << fixed(e["started_s_ago"].get<double>() - e["seconds"].get<double>()) << " s ago)\n";
    }
  }
  return out.str();
}

namespace {

// SIGTERM: the handler may only do async-signal-safe work, so it writes one byte to a
// pipe; the installing watchdog's terminate thread reads it and reports. 'q' stops it.
int g_terminate_pipe[2] = {-1, -1};
std::atomic<bool> g_terminate_installed{false};
struct sigaction g_previous_terminate;

void on_terminate_signal(int) {
  const char byte = 't';
  [[maybe_unused]] const ssize_t n = ::write(g_terminate_pipe[1], &byte, 1);
}

}  // namespace

Watchdog::Watchdog(std::shared_ptr<ControlStoreClient> store, int rank, int world_size,
                   WatchdogOptions options, core::FlightRecorder& recorder,
                   core::StepProfile& profile)
    : store_(std::move(store)),
      rank_(rank),
      world_size_(world_size),
      options_(std::move(options)),
      recorder_(recorder),
      profile_(profile),
      stragglers_(options_.straggler()) {
  STRATA_CHECK(store_ != nullptr, "watchdog: got no control store");
  STRATA_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_, "watchdog rank: got rank ",
               rank_, " of ", world_size_, ", expected 0 <= rank < world size");
  STRATA_CHECK(options_.timeout().count() > 0, "watchdog timeout: got ", options_.timeout().count(),
               " ms, expected more than 0");
  STRATA_CHECK(options_.heartbeat_interval().count() > 0 &&
                   options_.heartbeat_interval() < options_.timeout(),
               "watchdog heartbeat interval: got ", options_.heartbeat_interval().count(),
               " ms, expected more than 0 and less than the timeout of ",
               options_.timeout().count(), " ms");
  started_ = Clock::now();
  last_beat_.assign(static_cast<size_t>(world_size_), -1);
  last_change_.assign(static_cast<size_t>(world_size_), started_);
  summaries_.assign(static_cast<size_t>(world_size_), nlohmann::json::object());
  done_.assign(static_cast<size_t>(world_size_), false);
  thread_ = std::thread([this] { loop(); });
  bool expected = false;
  if (options_.report_on_terminate() &&
      g_terminate_installed.compare_exchange_strong(expected, true)) {
    if (::pipe2(g_terminate_pipe, O_CLOEXEC) == 0) {
      owns_terminate_ = true;
      terminate_thread_ = std::thread([this] { wait_for_terminate(); });
      struct sigaction action {};
      action.sa_handler = on_terminate_signal;
      sigemptyset(&action.sa_mask);
      sigaction(SIGTERM, &action, &g_previous_terminate);
    } else {
      g_terminate_installed = false;
    }
  }
}

void Watchdog::wait_for_terminate() {
  char byte = 0;
  while (::read(g_terminate_pipe[0], &byte, 1) < 0 && errno == EINTR) {
  }
  if (byte != 't') return;
  // The launcher stops this rank because another rank failed with an error: that rank
  // printed its line, and this rank's report would only bury it.
  if (auto line = posted_error()) return follow_error_abort(*line);
  report_this_rank_and_exit("rank " + std::to_string(rank_) +
                            " was told to stop (SIGTERM) by its launcher: another rank of the "
                            "job ended; this rank's last operations follow");
}

Watchdog::~Watchdog() { stop(); }

void Watchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (owns_terminate_) {
    sigaction(SIGTERM, &g_previous_terminate, nullptr);
    const char quit = 'q';
    [[maybe_unused]] const ssize_t n = ::write(g_terminate_pipe[1], &quit, 1);
    if (terminate_thread_.joinable()) terminate_thread_.join();
    ::close(g_terminate_pipe[0]);
    ::close(g_terminate_pipe[1]);
    owns_terminate_ = false;
    g_terminate_installed = false;
  }
  if (aborted_) return;
  try {
    store_->set(heartbeat_key(rank_), "done");
  } catch (const std::exception&) {
    // The store is gone at the end of the job: nobody is left to tell.
  }
}

void Watchdog::beat() {
  ++beats_;
  store_->set(recorder_key(rank_), recorder_.summary().dump());
  store_->set(steps_key(rank_), profile_.summary().dump());
  store_->set(heartbeat_key(rank_), std::to_string(beats_));
}

void Watchdog::check_stragglers() {
  if (rank_ != 0 || world_size_ < 2 || options_.straggler().threshold() <= 0) return;
  std::vector<nlohmann::json> profiles(static_cast<size_t>(world_size_));
  for (int r = 0; r < world_size_; ++r) {
    const auto i = static_cast<size_t>(r);
    if (done_[i]) continue;  // a finished rank's last steps say nothing of now
    if (auto text = store_->try_get(steps_key(r)))
      profiles[i] = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  }
  if (auto report = stragglers_.observe(profiles)) {
    std::lock_guard<std::mutex> lock(mutex_);
    straggler_reports_.push_back(std::move(*report));
  }
}

std::vector<StragglerReport> Watchdog::take_straggler_reports() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(straggler_reports_, {});
}

std::optional<std::string> Watchdog::check_ranks() {
  const auto now = Clock::now();
  const double timeout = seconds(options_.timeout());
  // Something waits past the timeout (or a rank went silent): that triggers the abort.
  // The diagnosis then names the best explanation among every rank's entries in
  // progress, not only the one that crossed the line first: a silent rank is the root
  // cause; else a wait for one named peer (a receive) explains the collectives blocked
  // behind it; else the longest collective.
  bool triggered = false;
  std::optional<std::string> silent_rank;
  struct Candidate {
    double seconds = 0;
    std::string text;
  };
  std::optional<Candidate> peer_wait, collective;
  for (int r = 0; r < world_size_; ++r) {
    const auto i = static_cast<size_t>(r);
    if (done_[i]) continue;
    const std::optional<std::string> beat = store_->try_get(heartbeat_key(r));
    if (beat == "done") {
      done_[i] = true;
      continue;
    }
    if (beat) {
      const int64_t count = std::stoll(*beat);
      if (count != last_beat_[i]) {
        last_beat_[i] = count;
        last_change_[i] = now;
      }
    }
    if (auto summary = store_->try_get(recorder_key(r))) {
      summaries_[i] = nlohmann::json::parse(*summary, nullptr, /*allow_exceptions=*/false);
    }
    const double silent = seconds(now - last_change_[i]);
    if (silent > timeout && !silent_rank) {
      triggered = true;
      silent_rank =
          "rank " + std::to_string(r) +
          (beat ? " sent no heartbeat for " + fixed(silent) + " s"
                : " sent no heartbeat in the " + fixed(silent) + " s since the watchdog started") +
          " (timeout " + fixed(timeout) + " s)";
    }
    if (!summaries_[i].is_object()) continue;
    for (const auto& e : summaries_[i].value("in_progress", nlohmann::json::array())) {
      const double running = e["seconds"].get<double>();
      if (running > timeout) triggered = true;
      // Ordinary traffic finishes within a heartbeat or two; only older entries explain.
      if (running < 2 * seconds(options_.heartbeat_interval())) continue;
      const int peer = e["peer"].get<int>();
      const std::string what = "\"" + e["what"].get<std::string>() + "\" for " + fixed(running) +
                               " s (timeout " + fixed(timeout) + " s)";
      std::optional<Candidate>& slot = peer >= 0 ? peer_wait : collective;
      if (slot && slot->seconds >= running) continue;
      slot = Candidate{running, peer >= 0 ? "rank " + std::to_string(r) + " waits for rank " +
                                                std::to_string(peer) + " in " + what
                                          : "rank " + std::to_string(r) + " is stuck in " + what};
    }
  }
  if (!triggered) return std::nullopt;
  if (silent_rank) return silent_rank;
  if (peer_wait) return peer_wait->text;
  if (collective) return collective->text;
  return std::nullopt;
}

nlohmann::json Watchdog::build_report(const std::string& reason, int detected_by) {
  const auto now = Clock::now();
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < world_size_; ++r) {
    const auto i = static_cast<size_t>(r);
    nlohmann::json entry = {{"rank", r}, {"done", static_cast<bool>(done_[i])}};
    entry["last_heartbeat_s_ago"] = last_beat_[i] >= 0
                                        ? nlohmann::json(seconds(now - last_change_[i]))
                                        : nlohmann::json(nullptr);
    entry["recorder"] = r == rank_ ? recorder_.summary() : summaries_[i];
    ranks.push_back(std::move(entry));
  }
  return {{"reason", reason},
          {"detected_by", detected_by},
          {"timeout_s", seconds(options_.timeout())},
          {"ranks", ranks}};
}

void Watchdog::abort(const std::string& reason, bool detected_here) {
  if (aborted_.exchange(true)) return;  // the terminate thread is already reporting
  WatchdogAbort event{reason, detected_here, build_report(reason, detected_here ? rank_ : -1)};
  if (!detected_here) event.report.erase("detected_by");
  if (detected_here) {
    try {
      store_->set("abort/report", event.report.dump());
    } catch (const std::exception&) {
    }
  }
  if (options_.on_abort()) {
    options_.on_abort()(event);
    return;
  }
  if (detected_here) {
    std::fputs(format_hang_report(event.report).c_str(), stderr);
    if (!options_.hang_report().empty()) {
      try {
        core::write_file_atomically(options_.hang_report(), event.report.dump(2) + "\n");
      } catch (const std::exception& e) {
        std::fprintf(stderr, "strata watchdog: --hang-report: %s\n", e.what());
      }
    }
    std::fflush(stderr);
    try {
      store_->set("abort/reported", "1");
      // The store may live in this process (rank 0 under mpirun): stay until the other
      // ranks have seen the abort (or a few heartbeats), so that they report it as such
      // rather than as a lost store.
      const auto deadline =
          Clock::now() + std::max<Clock::duration>(3 * options_.heartbeat_interval(),
                                                   std::chrono::milliseconds(300));
      while (Clock::now() < deadline) {
        const auto acks = store_->try_get("abort/ack");
        if (acks && std::stoll(*acks) >= world_size_ - 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } catch (const std::exception&) {
    }
  } else {
    std::fprintf(stderr, "strata watchdog: rank %d aborts: %s\n", rank_, reason.c_str());
    std::fflush(stderr);
    try {
      store_->add("abort/ack", 1);
    } catch (const std::exception&) {
    }
    // Let the detecting rank print its report before this rank's exit ends the job
    // (mpirun and strata-run stop every rank once one has failed).
    try {
      store_->get("abort/reported", std::chrono::milliseconds(5000));
    } catch (const std::exception&) {
    }
  }
  // _Exit: the main thread may be inside MPI_Recv, and destructors could block.
  std::_Exit(options_.exit_code());
}

void Watchdog::follow_abort(const std::string& reason) {
  if (posted_error()) return follow_error_abort(reason);
  abort(reason, false);
}

void Watchdog::follow_error_abort(const std::string& reason) {
  if (aborted_.exchange(true)) return;  // the other thread is already leaving
  if (options_.on_abort()) {
    options_.on_abort()(WatchdogAbort{reason, false, {{"reason", reason}}, true});
    return;
  }
  leave_after_error_abort(*store_, rank_, world_size_, options_.hosts_store(),
                          options_.heartbeat_interval());
  std::_Exit(kErrorExitCode);
}

std::optional<std::string> Watchdog::posted_error() {
  if (!error_abort_posted(*store_)) return std::nullopt;
  try {
    return store_->try_get("abort").value_or("");
  } catch (const std::exception&) {
    return "";
  }
}

void Watchdog::lost_store(const std::string& error) {
  report_this_rank_and_exit("rank " + std::to_string(rank_) + " lost the control store (" + error +
                            ")");
}

nlohmann::json Watchdog::this_rank_report(const std::string& reason) {
  return {{"reason", reason},
          {"detected_by", rank_},
          {"timeout_s", seconds(options_.timeout())},
          {"ranks", nlohmann::json::array({{{"rank", rank_},
                                            {"done", false},
                                            {"last_heartbeat_s_ago", 0.0},
                                            {"recorder", recorder_.summary()}}})}};
}

void Watchdog::report_this_rank_and_exit(const std::string& reason) {
  // What this rank knows of the others is stale or unknown: report this rank alone.
  if (aborted_.exchange(true)) return;  // the loop thread is already reporting
  const nlohmann::json report = this_rank_report(reason);
  if (options_.on_abort()) {
    options_.on_abort()(WatchdogAbort{reason, true, report});
    return;
  }
  std::fputs(format_hang_report(report).c_str(), stderr);
  std::fflush(stderr);
  std::_Exit(options_.exit_code());
}

void Watchdog::loop() {
  while (true) {
    try {
      beat();
      if (auto reason = store_->try_get("abort")) return follow_abort(*reason);
      if (auto problem = check_ranks()) {
        // The first rank to claim `abort/by` owns the diagnosis; the others follow it.
        const std::string me = std::to_string(rank_);
        if (store_->compare_set("abort/by", "", me) == me) {
          store_->set("abort", *problem);
          return abort(*problem, true);
        }
        return follow_abort(store_->get("abort", 10 * options_.heartbeat_interval()));
      }
      check_stragglers();
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
      }
      return lost_store(e.what());
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (wake_.wait_for(lock, options_.heartbeat_interval(), [this] { return stopping_; })) return;
  }
}

}  // namespace strata::parallel
