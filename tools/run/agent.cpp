#include "run/agent.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include "run/rank_group.h"
#include "strata/parallel/control/watchdog.h"

namespace strata::run {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> pending_signal{0};

void on_signal(int signal) { pending_signal = signal; }

void say(const std::string& line) {
  std::fprintf(stderr, "strata-run: %s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace

std::vector<std::string> with_resume_auto(std::vector<std::string> command) {
  for (size_t i = 1; i < command.size(); ++i) {
    if (command[i] == "--resume" && i + 1 < command.size()) {
      command[i + 1] = "auto";
      return command;
    }
    if (command[i].rfind("--resume=", 0) == 0) {
      command[i] = "--resume=auto";
      return command;
    }
  }
  command.insert(command.end(), {"--resume", "auto"});
  return command;
}

Agent::Agent(LaunchOptions options) : options_(std::move(options)) {}

Agent::~Agent() = default;

std::string Agent::data_plane_host() const {
  if (!rendezvous_) return "";
  if (!options_.local_addr.empty()) return options_.local_addr;
  // Nodes that meet on loopback are one host: Gloo's loopback default serves them.
  if (rendezvous_->host().rfind("127.", 0) == 0) return "";
  if (options_.node_rank == 0) return rendezvous_->host();
  return host_name();
}

bool Agent::restartable(const Failure& failure, int attempt) const {
  return failure.kind == Failure::Kind::Crash && attempt < options_.max_restarts;
}

int Agent::run() {
  if (options_.multi_node()) {
    rendezvous_ = std::make_unique<Rendezvous>(options_);
    rendezvous_->join();
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &action, nullptr);

  std::optional<Failure> previous;
  for (int attempt = 0;; ++attempt) {
    const std::optional<Failure> failure = run_attempt(attempt, previous);
    if (failure && restartable(*failure, attempt)) {
      say("restart " + std::to_string(attempt + 1) + " of " +
          std::to_string(options_.max_restarts) + ": " + failure->reason +
          "; relaunching the job with --resume auto");
      previous = failure;
      continue;
    }
    if (failure && failure->kind == Failure::Kind::Crash && options_.max_restarts > 0) {
      say(failure->reason + "; no restarts left (--max-restarts " +
          std::to_string(options_.max_restarts) + ")");
    }
    if (rendezvous_) rendezvous_->leave();
    return failure ? failure->exit_code : 0;
  }
}

std::optional<Failure> Agent::run_attempt(int attempt, const std::optional<Failure>& previous) {
  // Each attempt has a store of its own: the last one's keys (its abort among them)
  // would end the new ranks at once.
  std::unique_ptr<parallel::ControlStoreServer> server;
  std::string address;
  if (!rendezvous_ || options_.node_rank == 0) {
    server = std::make_unique<parallel::ControlStoreServer>(
        parallel::ControlStoreServerOptions()
            .host(rendezvous_ ? rendezvous_->host() : options_.host)
            .port(rendezvous_ ? 0 : options_.port));
    address = server->address();
    if (rendezvous_) rendezvous_->publish_store(attempt, address);
  } else {
    address = rendezvous_->store_address(attempt);
  }
  LaunchOptions options = options_;
  std::map<std::string, std::string> env;
  if (const std::string gloo_host = data_plane_host(); !gloo_host.empty()) {
    env["STRATA_GLOO_HOST"] = gloo_host;
  }
  if (attempt > 0) {
    options.command = with_resume_auto(options.command);
    env["STRATA_RESTART_COUNT"] = std::to_string(attempt);
    env["STRATA_RESTART_REASON"] = previous ? previous->reason : "";
  }
  // The one-line story of a failure is told once, after the attempt, when restarts are on.
  const bool tell_now = options_.max_restarts == 0;
  RankGroup ranks(options, address, env);
  std::optional<Failure> failure;
  Clock::time_point kill_at = Clock::time_point::max(), next_poll = Clock::now();
  const auto stop = [&](const Failure& why) {
    failure = why;
    if (rendezvous_) rendezvous_->post_failure(attempt, why);
    ranks.signal_all(SIGTERM);
    kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(options_.grace * 1000));
  };
  while (ranks.running() > 0) {
    if (const int s = pending_signal.exchange(0)) {
      say("got signal " + std::to_string(s) + " (" + strsignal(s) + "), passing it to the ranks");
      ranks.signal_all(s);
      if (!failure) {
        stop({Failure::Kind::Signal, 128 + s,
              "node " + std::to_string(options_.node_rank) + "'s agent got signal " +
                  std::to_string(s) + " (" + strsignal(s) + ")"});
      }
    }
    if (auto exit = ranks.reap(); exit && !failure) {
      const int rank = options.global_rank(exit->local_rank);
      parallel::ControlStoreClient client(
          address, parallel::ControlStoreClientOptions().io_timeout(std::chrono::seconds(2)));
      const bool error = parallel::error_abort_posted(client, rank);
      const std::string where =
          rendezvous_ ? "node " + std::to_string(options_.node_rank) + ", " : "";
      Failure why{error ? Failure::Kind::Error : Failure::Kind::Crash, exit_code_of(exit->status),
                  "rank " + std::to_string(rank) + " (" + where + "pid " +
                      std::to_string(exit->pid) + ") " + describe_exit(exit->status)};
      if (!error && tell_now) {
        say(why.reason + "; stopping the other " + std::to_string(ranks.running()) + " rank(s)");
      }
      stop(why);
    }
    if (rendezvous_ && !failure && Clock::now() >= next_poll) {
      next_poll = Clock::now() + std::chrono::milliseconds(200);
      if (auto remote = rendezvous_->failure(attempt)) {
        if (remote->kind != Failure::Kind::Error && tell_now) {
          say("node " + std::to_string(options_.node_rank) + " stops its ranks: " + remote->reason);
        }
        stop(*remote);
      }
    }
    if (ranks.running() > 0 && Clock::now() >= kill_at) {
      ranks.signal_all(SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (ranks.running() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!rendezvous_) return failure;
  // Every agent acts on the same failure: the first one posted, wherever it happened.
  rendezvous_->finish_attempt(attempt);
  return rendezvous_->failure(attempt);
}

}  // namespace strata::run
