#include "run/agent.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

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

bool Agent::restartable(const Failure& failure, int restarts) const {
  return failure.kind == Failure::Kind::Crash && restarts < options_.max_restarts;
}

std::optional<Failure> Agent::lost_node_failure(const std::vector<int>& members, bool wait) {
  if (!rendezvous_) return std::nullopt;
  const auto deadline =
      Clock::now() + (wait ? Rendezvous::kLostAfter + std::chrono::milliseconds(500)
                           : std::chrono::milliseconds(0));
  while (true) {
    rendezvous_->beat();
    const auto lost = rendezvous_->lost_nodes(members);
    if (!lost.empty()) {
      std::string nodes;
      for (int node : lost) nodes += (nodes.empty() ? "" : ", ") + std::to_string(node);
      return Failure{Failure::Kind::Crash, 1,
                     "node " + nodes + " was lost (its agent has not answered for " +
                         std::to_string(Rendezvous::kLostAfter.count() / 1000) + " s)"};
    }
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
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
  std::vector<int> members, last_members;
  int restarts = 0;
  for (int attempt = rendezvous_ ? rendezvous_->first_attempt() : 0;; ++attempt) {
    if (rendezvous_) {
      members = rendezvous_->members(attempt);
      if (members.empty()) {
        if (!rendezvous_->job_ended()) continue;  // not in this attempt: wait for the next
        say("node " + std::to_string(options_.node_rank) +
            ": the job ended before this node could join it");
        return 0;
      }
      if (attempt > 0 && members != last_members) {
        std::string nodes;
        for (int node : members) nodes += (nodes.empty() ? "" : ", ") + std::to_string(node);
        say("attempt " + std::to_string(attempt) + " runs on node(s) " + nodes + " (" +
            std::to_string(members.size()) + " of " + std::to_string(options_.nnodes) +
            "): world size " + std::to_string(members.size() * options_.nproc_per_node));
      }
      last_members = members;
    }
    const std::optional<Failure> failure = run_attempt(attempt, members, previous);
    if (failure && failure->kind == Failure::Kind::Membership) {
      say(failure->reason + "; relaunching the job with --resume auto to take it in");
      previous = failure;
      restart_reasons_.push_back(failure->reason);
      continue;
    }
    if (failure && restartable(*failure, restarts)) {
      ++restarts;
      say("restart " + std::to_string(restarts) + " of " + std::to_string(options_.max_restarts) +
          ": " + failure->reason + "; relaunching the job with --resume auto");
      previous = failure;
      restart_reasons_.push_back(failure->reason);
      continue;
    }
    if (failure && failure->kind == Failure::Kind::Crash && options_.max_restarts > 0) {
      say(failure->reason + "; no restarts left (--max-restarts " +
          std::to_string(options_.max_restarts) + ")");
    }
    if (rendezvous_) rendezvous_->leave(members);
    return failure ? failure->exit_code : 0;
  }
}

std::optional<Failure> Agent::run_attempt(int attempt, const std::vector<int>& members,
                                          const std::optional<Failure>& previous) {
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
  if (rendezvous_) {
    // The attempt's nodes, numbered by their place among the members: its world.
    options.nnodes = static_cast<int>(members.size());
    options.node_rank = static_cast<int>(
        std::find(members.begin(), members.end(), options_.node_rank) - members.begin());
    env["STRATA_NODE_RANK"] = std::to_string(options_.node_rank);
  }
  if (world_size_ > 0 && world_size_ != options.world_size()) {
    env["STRATA_PREVIOUS_WORLD_SIZE"] = std::to_string(world_size_);
  }
  world_size_ = options.world_size();
  if (const std::string gloo_host = data_plane_host(); !gloo_host.empty()) {
    env["STRATA_GLOO_HOST"] = gloo_host;
  }
  if (attempt > 0) {
    options.command = with_resume_auto(options.command);
    env["STRATA_RESTART_COUNT"] = std::to_string(attempt);
    env["STRATA_RESTART_REASON"] = previous ? previous->reason : "";
    // The restarts before this one, for the metrics file of the attempt that finishes
    // (each attempt's file replaces the last one's).
    nlohmann::json earlier = nlohmann::json::array();
    for (size_t i = 0; i + 1 < restart_reasons_.size(); ++i) {
      earlier.push_back({{"restart", i + 1}, {"reason", restart_reasons_[i]}});
    }
    env["STRATA_RESTART_HISTORY"] = earlier.dump();
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
      if (error) {
        if (auto lost = lost_node_failure(members, /*wait=*/true)) {
          stop(*lost);
          continue;
        }
      }
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
    const bool poll = rendezvous_ && Clock::now() >= next_poll;
    if (poll) {
      next_poll = Clock::now() + std::chrono::milliseconds(200);
      // The other agents must see this one alive while its ranks stop, too.
      rendezvous_->beat();
    }
    if (poll && !failure) {
      if (auto lost = lost_node_failure(members, /*wait=*/false)) {
        if (tell_now) say(lost->reason + "; stopping this node's ranks");
        stop(*lost);
        continue;
      }
      // Node 0 grows the job for a node that waits to join it.
      if (options_.node_rank == 0 && options_.elastic() &&
          static_cast<int>(members.size()) < options_.nnodes) {
        const auto waiting = rendezvous_->waiting_nodes(attempt, members);
        if (!waiting.empty()) {
          stop({Failure::Kind::Membership, 0,
                "node " + std::to_string(waiting.front()) + " is ready to join the job"});
          continue;
        }
      }
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
  rendezvous_->finish_attempt(attempt, members);
  return rendezvous_->failure(attempt);
}

}  // namespace strata::run
