#include "run/rank_group.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "strata/core/error.h"

namespace strata::run {
namespace {

pid_t start_rank(const LaunchOptions& o, int local_rank, const std::string& address,
                 const std::map<std::string, std::string>& extra_env) {
  const pid_t launcher = getpid();
  const pid_t pid = fork();
  STRATA_CHECK(pid >= 0, "strata-run: fork failed: ", std::strerror(errno));
  if (pid > 0) return pid;
  // The child. It dies with the launcher, even one killed by SIGKILL: no orphan rank
  // trains on alone.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != launcher) std::_Exit(1);  // the launcher is gone already
  setenv("STRATA_RANK", std::to_string(o.global_rank(local_rank)).c_str(), 1);
  setenv("STRATA_WORLD_SIZE", std::to_string(o.world_size()).c_str(), 1);
  setenv("STRATA_STORE_ADDR", address.c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(local_rank).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
  // The straggler report names the node a slow rank runs on.
  setenv("STRATA_NODE_RANK", std::to_string(o.node_rank).c_str(), 1);
  if (o.timeout >= 0) setenv("STRATA_TIMEOUT", std::to_string(o.timeout).c_str(), 1);
  if (!o.backend.empty()) setenv("STRATA_BACKEND", o.backend.c_str(), 1);
  for (const auto& [name, value] : extra_env) setenv(name.c_str(), value.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& arg : o.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "error: strata-run: cannot start %s: %s\n", argv[0], std::strerror(errno));
  std::_Exit(127);
}

}  // namespace

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

RankGroup::RankGroup(const LaunchOptions& options, const std::string& store_address,
                     const std::map<std::string, std::string>& extra_env)
    : ranks_(static_cast<size_t>(options.nproc_per_node)) {
  for (int r = 0; r < options.nproc_per_node; ++r) {
    ranks_[static_cast<size_t>(r)] = {start_rank(options, r, store_address, extra_env), true};
    ++running_;
  }
}

std::optional<RankGroup::Exit> RankGroup::reap() {
  std::optional<Exit> failed;
  for (size_t i = 0; i < ranks_.size(); ++i) {
    if (!ranks_[i].running) continue;
    int status = 0;
    if (waitpid(ranks_[i].pid, &status, WNOHANG) != ranks_[i].pid) continue;
    ranks_[i].running = false;
    --running_;
    if ((WIFEXITED(status) && WEXITSTATUS(status) != 0) || WIFSIGNALED(status)) {
      if (!failed) failed = Exit{static_cast<int>(i), ranks_[i].pid, status};
    }
  }
  return failed;
}

void RankGroup::signal_all(int signal) {
  for (auto& r : ranks_) {
    if (r.running) kill(r.pid, signal);
  }
}

}  // namespace strata::run
