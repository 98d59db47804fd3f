#pragma once
// The ranks one agent starts on its node: child processes of strata-run, each told its
// place in the job through the environment.
#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "run/launch_options.h"

namespace strata::run {

// How a rank ended, in words ("was killed by signal 9 (Killed)", "exited with status 3"),
// and as a shell would report it (128 + the signal number for a signal).
std::string describe_exit(int status);
int exit_code_of(int status);

class RankGroup {
 public:
  // Starts the node's ranks of `options.command` with STRATA_RANK (global),
  // STRATA_WORLD_SIZE, STRATA_STORE_ADDR=`store_address`, LOCAL_RANK, LOCAL_WORLD_SIZE and
  // `extra_env` in their environment; each dies with the launcher.
  RankGroup(const LaunchOptions& options, const std::string& store_address,
            const std::map<std::string, std::string>& extra_env);

  struct Exit {
    int local_rank = 0;
    pid_t pid = -1;
    int status = 0;
  };
  // Reaps every rank that has exited; returns the first that failed (non-zero status or a
  // signal) among them.
  std::optional<Exit> reap();
  void signal_all(int signal);
  int running() const { return running_; }

 private:
  struct Rank {
    pid_t pid = -1;
    bool running = false;
  };
  std::vector<Rank> ranks_;
  int running_ = 0;
};

}  // namespace strata::run
