#pragma once
// strata-run's agent on one node: starts the node's ranks, watches them (and, on several
// nodes, the other agents through the rendezvous), stops them all when one fails, and
// relaunches the job from its newest checkpoint (--resume auto) up to --max-restarts times.
#include <memory>
#include <optional>

#include "run/launch_options.h"
#include "run/rendezvous.h"

namespace strata::run {

class Agent {
 public:
  explicit Agent(LaunchOptions options);
  ~Agent();
  // The whole job, restarts included; returns strata-run's exit status: 0, the failed
  // rank's status (128 + its signal), or 128 + the signal that stopped the agent.
  int run();

 private:
  // `members`: the attempt's nodes (several nodes only).
  std::optional<Failure> run_attempt(int attempt, const std::vector<int>& members,
                                     const std::optional<Failure>& previous);
  bool restartable(const Failure& failure, int restarts) const;
  // A rank failed with an error line: when a node was lost meanwhile, that loss is the
  // cause (a peer's death broke the rank's communication), and a restart can cure it.
  std::optional<Failure> lost_node_failure(const std::vector<int>& members, bool wait);
  // STRATA_GLOO_HOST for this node's ranks (LaunchOptions::local_addr); empty: unset.
  std::string data_plane_host() const;

  LaunchOptions options_;
  std::unique_ptr<Rendezvous> rendezvous_;    // several nodes only
  int world_size_ = 0;                        // of the last attempt
  std::vector<std::string> restart_reasons_;  // of every relaunch so far, in order
};

// `command` with `--resume auto`: the value of an existing --resume replaced, else added.
std::vector<std::string> with_resume_auto(std::vector<std::string> command);

}  // namespace strata::run
