#pragma once
// How the agents of a job on several nodes find each other and agree, through a control
// store that node 0's agent hosts at --rdzv: who is in the job, where each attempt's store
// is, and how each attempt ended, so that every agent stops, restarts or gives up alike.
//
// Membership: every agent beats `alive/<node>` while it runs; an agent that stops beating
// for kLostAfter is a lost node (its machine died, or its agent was killed). Each attempt's
// members are agreed through node 0 (`attempt/<a>/members`): before a relaunch node 0
// waits up to --rejoin-timeout for every node to say it is ready; with --nnodes MIN:MAX
// the attempt goes on with the nodes that are (at least MIN), else it fails naming the
// missing ones. An agent started later with a lost node's --node-rank takes its place and
// joins at the next attempt; node 0 restarts the job for it when it is below MAX nodes.
// Node 0 hosts the rendezvous and must live through the job.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "run/launch_options.h"
#include "strata/parallel/control/control_store.h"

namespace strata::run {

// How an attempt of the job ended. A crash (a rank killed, or one that exited non-zero
// without an error line: a watchdog's hang abort) is what a restart can cure; an error
// line (bad input, a failed check) would only be printed again, and a signal to an agent
// is the user's stop.
struct Failure {
  // Membership: not a failure but a node that joined; the job restarts to grow, without
  // using one of --max-restarts.
  enum class Kind { Crash, Error, Signal, Membership };
  Kind kind = Kind::Crash;
  int exit_code = 1;
  std::string reason;  // "rank 1 (node 1, pid 42) was killed by signal 9 (Killed)"
};

class Rendezvous {
 public:
  // Node 0 hosts the rendezvous store at options.rdzv; every agent (node 0's too) connects
  // to it, waiting up to --rdzv-timeout for it to come up. strata::Error if it cannot.
  explicit Rendezvous(const LaunchOptions& options);
  ~Rendezvous();

  // Claims this node's rank, says what it runs, waits up to --rdzv-timeout for every node
  // and checks that they all run the same command with the same --nproc-per-node.
  // strata::Error naming the node otherwise (a rank claimed twice, a node missing).
  void join();
  // The attempt this agent starts with: 0, or for an agent that joins a running job (one
  // taking a lost node's place) the one after the current.
  int first_attempt() const { return first_attempt_; }

  // Says that this agent is alive; called every poll (a few times a second).
  void beat();
  // Those of `nodes` whose agent has not beaten for kLostAfter, as this agent sees it.
  std::vector<int> lost_nodes(const std::vector<int>& nodes);
  static constexpr std::chrono::milliseconds kLostAfter{3000};

  // The nodes of `attempt` (sorted), agreed through node 0; empty when this node is not
  // among them (it came too late: it waits for the next). strata::Error when fewer than
  // MIN nodes are ready within --rejoin-timeout, naming the missing ones. Also returns
  // empty when the job has ended meanwhile (job_ended()).
  std::vector<int> members(int attempt);
  // Nodes that wait to join the attempt after `attempt` and are not among `members`.
  std::vector<int> waiting_nodes(int attempt, const std::vector<int>& members);
  // The job is over: no more attempts (node 0 says it when it leaves).
  bool job_ended();
  // The host of --rdzv: node 0 hosts each attempt's control store there.
  const std::string& host() const { return host_; }
  void publish_store(int attempt, const std::string& address);
  std::string store_address(int attempt);
  // The first failure posted for an attempt is the one every agent acts on.
  void post_failure(int attempt, const Failure& failure);
  std::optional<Failure> failure(int attempt);
  // This node's ranks of `attempt` have all exited: waits until every node's have (a node
  // that does not say so within --rdzv-timeout is posted as the attempt's failure), so
  // that node 0 keeps the attempt's store up for everyone and all decide together.
  // Lost nodes are not waited for.
  void finish_attempt(int attempt, const std::vector<int>& members);
  // The end of the job for this agent: node 0 says that the job has ended and waits
  // (briefly) for the other members of the last attempt to leave before its store goes.
  void leave(const std::vector<int>& members);

 private:
  std::string node_key(const std::string& what, int node) const;
  std::vector<std::string> node_keys(const std::string& what) const;
  std::string missing_nodes(const std::string& what);
  std::vector<int> ready_nodes(int attempt);
  // Claims this node's rank; a rank whose agent is lost may be taken over.
  void claim();

  LaunchOptions options_;
  std::string host_;
  std::unique_ptr<parallel::ControlStoreServer> server_;
  std::unique_ptr<parallel::ControlStoreClient> store_;
  int first_attempt_ = 0;
  int64_t beats_ = 0;
  // Per node: the last `alive` value seen and when it changed.
  std::map<int, std::pair<std::string, std::chrono::steady_clock::time_point>> seen_alive_;
};

}  // namespace strata::run
