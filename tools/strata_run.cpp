// strata-run: starts N ranks of a strata program without mpirun (like torchrun).
//
//   strata-run -n 2 build/examples/train_fmnist --model mlp --max-steps 100
//
// The launcher hosts the job's control store (loopback, any free port unless --port) and
// starts N copies of the program, each with STRATA_RANK, STRATA_WORLD_SIZE,
// STRATA_STORE_ADDR=host:port, LOCAL_RANK and LOCAL_WORLD_SIZE (so a rank takes its share
// of the cores) in its environment, and STRATA_TIMEOUT when --timeout is given (the
// programs' default for their --timeout) and STRATA_BACKEND when --backend is given.
// strata programs then rendezvous through the store (world_communicator: Gloo, unless
// --backend names another) and beat their watchdog's heartbeat into it.
//
// The launcher hosts the store, rather than rank 0, because it outlives every rank: when
// rank 0 dies the others still find the store, read the abort and explain it.
//
// SIGINT, SIGTERM and SIGHUP are forwarded to every rank. When a rank exits with a
// non-zero status or is killed by a signal, the launcher prints which rank and how, sends
// SIGTERM to the others, SIGKILL after --grace seconds, and exits with that rank's status
// (128 + the signal number for a signal). A rank that failed with an error has printed its
// one line and told the others through the store (parallel::end_job_after_error); the
// launcher adds no line of its own for it, nor for a rank that left after it.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "strata/core/error.h"
#include "strata/parallel/control/control_store.h"
#include "strata/parallel/control/watchdog.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

namespace {

std::atomic<int> pending_signal{0};

void on_signal(int signal) { pending_signal = signal; }

struct Options {
  int ranks = 1;
  int port = 0;
  std::string host = "127.0.0.1";
  double timeout = -1;  // not given
  double grace = 5;
  std::string backend;  // not given: the programs choose (Gloo)
  std::vector<std::string> command;
};

struct Rank {
  pid_t pid = -1;
  bool running = false;
};

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

pid_t start_rank(const Options& o, int rank, const std::string& address) {
  const pid_t launcher = getpid();
  const pid_t pid = fork();
  STRATA_CHECK(pid >= 0, "strata-run: fork failed: ", std::strerror(errno));
  if (pid > 0) return pid;
  // The child. It dies with the launcher, even one killed by SIGKILL: no orphan rank
  // trains on alone.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != launcher) std::_Exit(1);  // the launcher is gone already
  setenv("STRATA_RANK", std::to_string(rank).c_str(), 1);
  setenv("STRATA_WORLD_SIZE", std::to_string(o.ranks).c_str(), 1);
  setenv("STRATA_STORE_ADDR", address.c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", std::to_string(o.ranks).c_str(), 1);
  if (o.timeout >= 0) setenv("STRATA_TIMEOUT", std::to_string(o.timeout).c_str(), 1);
  if (!o.backend.empty()) setenv("STRATA_BACKEND", o.backend.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& arg : o.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "error: strata-run: cannot start %s: %s\n", argv[0], std::strerror(errno));
  std::_Exit(127);
}

void signal_all(std::vector<Rank>& ranks, int signal) {
  for (auto& r : ranks) {
    if (r.running) kill(r.pid, signal);
  }
}

// Reaps every rank that has exited; returns the first failure seen as (rank, status).
std::optional<std::pair<int, int>> reap(std::vector<Rank>& ranks, int& running) {
  std::optional<std::pair<int, int>> failed;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (!ranks[i].running) continue;
    int status = 0;
    if (waitpid(ranks[i].pid, &status, WNOHANG) != ranks[i].pid) continue;
    ranks[i].running = false;
    --running;
    if ((WIFEXITED(status) && WEXITSTATUS(status) != 0) || WIFSIGNALED(status)) {
      if (!failed) failed = std::make_pair(static_cast<int>(i), status);
    }
  }
  return failed;
}

int launch(const Options& o) {
  STRATA_CHECK(!o.command.empty(),
               "strata-run: no program given, expected strata-run -n N program [args...]");
  strata::parallel::ControlStoreServer store(
      strata::parallel::ControlStoreServerOptions().host(o.host).port(o.port));
  const std::string address = store.address();

  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &action, nullptr);

  std::vector<Rank> ranks(static_cast<size_t>(o.ranks));
  for (int r = 0; r < o.ranks; ++r) {
    ranks[static_cast<size_t>(r)].pid = start_rank(o, r, address);
    ranks[static_cast<size_t>(r)].running = true;
  }
  int running = o.ranks;
  int exit_code = 0;
  bool stopping = false;
  std::chrono::steady_clock::time_point kill_at;
  while (running > 0) {
    if (const int s = pending_signal.exchange(0)) {
      std::fprintf(stderr, "strata-run: got signal %d (%s), passing it to the ranks\n", s,
                   strsignal(s));
      signal_all(ranks, s);
      if (!stopping) {
        stopping = true;
        exit_code = 128 + s;
        kill_at = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(o.grace * 1000));
      }
    }
    if (auto failed = reap(ranks, running); failed && !stopping) {
      const auto [rank, status] = *failed;
      strata::parallel::ControlStoreClient client(
          address,
          strata::parallel::ControlStoreClientOptions().io_timeout(std::chrono::seconds(2)));
      if (!strata::parallel::error_abort_posted(client, rank))
        std::fprintf(stderr, "strata-run: rank %d (pid %d) %s; stopping the other %d rank(s)\n",
                     rank, static_cast<int>(ranks[static_cast<size_t>(rank)].pid),
                     describe(status).c_str(), running);
      std::fflush(stderr);
      exit_code = exit_code_of(status);
      stopping = true;
      signal_all(ranks, SIGTERM);
      kill_at = std::chrono::steady_clock::now() +
                std::chrono::milliseconds(static_cast<int64_t>(o.grace * 1000));
    }
    if (stopping && running > 0 && std::chrono::steady_clock::now() >= kill_at) {
      signal_all(ranks, SIGKILL);
      kill_at = std::chrono::steady_clock::time_point::max();
    }
    if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Options o;
    CLI::App app{
        "Starts N ranks of a strata program with a control store, like torchrun:\n"
        "  strata-run -n 2 build/examples/train_fmnist --model mlp"};
    strata::programs::configure_cli(app);
    app.prefix_command();              // everything from the program name on belongs to the program
    using namespace strata::programs;  // NOLINT(google-build-using-namespace): flag ranges
    integer_range(app.add_option("-n,--nproc", o.ranks, "Number of ranks"), 1, kMaxRanks);
    integer_range(app.add_option("--port", o.port, "Control store port (0: any free port)"), 0,
                  65535);
    app.add_option("--host", o.host, "Address the control store listens on");
    real_range(app.add_option("--timeout", o.timeout,
                              "Hang timeout in seconds for the ranks (STRATA_TIMEOUT: their "
                              "--timeout default)"),
               0, kMaxSeconds);
    app.add_option("--backend", o.backend,
                   "Communicator backend of the ranks (STRATA_BACKEND; e.g. gloo, nccl)");
    real_range(app.add_option("--grace", o.grace,
                              "Seconds the other ranks get to exit after one failed, before "
                              "SIGKILL"),
               0, kMaxSeconds);
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    o.command = app.remaining();
    return launch(o);
  });
}
