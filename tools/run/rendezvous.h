#pragma once
// How the agents of a job on several nodes find each other and agree, through a control
// store that node 0's agent hosts at --rdzv: who is in the job, where each attempt's store
// is, and how each attempt ended, so that every agent stops, restarts or gives up alike.
#include <memory>
#include <optional>
#include <string>

#include "run/launch_options.h"
#include "strata/parallel/control/control_store.h"

namespace strata::run {

// How an attempt of the job ended. A crash (a rank killed, or one that exited non-zero
// without an error line: a watchdog's hang abort) is what a restart can cure; an error
// line (bad input, a failed check) would only be printed again, and a signal to an agent
// is the user's stop.
struct Failure {
  enum class Kind { Crash, Error, Signal };
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
  void finish_attempt(int attempt);
  // The end of the job for this agent: node 0 waits (briefly) for the others to leave
  // before its store goes.
  void leave();

 private:
  std::string node_key(const std::string& what, int node) const;
  std::vector<std::string> node_keys(const std::string& what) const;
  std::string missing_nodes(const std::string& what);

  LaunchOptions options_;
  std::string host_;
  std::unique_ptr<parallel::ControlStoreServer> server_;
  std::unique_ptr<parallel::ControlStoreClient> store_;
};

}  // namespace strata::run
