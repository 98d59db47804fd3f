#pragma once
// What strata-run was asked to launch: its command line, as the agent and the rendezvous
// read it.
#include <unistd.h>

#include <string>
#include <vector>

namespace strata::run {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;     // --nnodes N, or MAX of --nnodes MIN:MAX
  int min_nodes = 1;  // MIN of --nnodes MIN:MAX; nnodes when the membership is fixed
  int node_rank = 0;
  // host:port of node 0's agent, which hosts the rendezvous store; empty for one node.
  std::string rdzv;
  // This node's address for the ranks' Gloo data plane (STRATA_GLOO_HOST); empty: node 0
  // uses the rendezvous host, the others their host name (loopback for a loopback --rdzv).
  std::string local_addr;
  double rdzv_timeout = 60;  // seconds for every node to join, and to report an attempt's end
  int max_restarts = 0;
  // Seconds node 0 waits, before a relaunch, for every node to be back; then the job goes
  // on with the nodes it has when they are at least min_nodes.
  double rejoin_timeout = 30;
  int port = 0;  // one node: the control store's port (0: any free one)
  std::string host = "127.0.0.1";
  double timeout = -1;  // the ranks' hang timeout; < 0: not given
  double grace = 5;     // seconds the ranks get after SIGTERM before SIGKILL
  std::string backend;  // empty: the programs choose (Gloo)
  std::vector<std::string> command;

  bool multi_node() const { return !rdzv.empty(); }
  bool elastic() const { return min_nodes < nnodes; }
  int world_size() const { return nnodes * nproc_per_node; }
  int global_rank(int local_rank) const { return node_rank * nproc_per_node + local_rank; }
};

// This machine's host name (what the other agents are told, and Gloo's address on it).
inline std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

}  // namespace strata::run
