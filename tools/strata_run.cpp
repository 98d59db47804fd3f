// strata-run: starts N ranks of a strata program without mpirun (like torchrun), on one
// node or several, and restarts the job after a crash.
//
//   strata-run -n 2 build/examples/train_fmnist --model mlp --max-steps 100
//   strata-run --nnodes 2 --node-rank 0 --nproc-per-node 1 --rdzv host0:29400 prog...  (host0)
//   strata-run --nnodes 2 --node-rank 1 --nproc-per-node 1 --rdzv host0:29400 prog...  (host1)
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
//
// On several nodes, node 0's agent hosts a rendezvous store at --rdzv; the agents agree
// there on the job's membership, on each attempt's control store (node 0 hosts it) and on
// how each attempt ended (run/rendezvous.h). With --max-restarts R, a crash (not an error
// line, not a signal to the launcher) stops every rank and relaunches the job with
// --resume auto, R times at most (run/agent.h). With --nnodes MIN:MAX the job survives a
// lost node: it relaunches on the nodes left (at least MIN) after --rejoin-timeout, and
// grows again when an agent takes the lost node's place (run/rendezvous.h).
#include <string>
#include <tuple>
#include <utility>

#include "run/agent.h"
#include "strata/core/error.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

namespace {

// --nnodes N or MIN:MAX, each 1..kMaxRanks, MIN <= MAX.
std::pair<int, int> parse_node_range(const std::string& text) {
  const auto number = [&](const std::string& part) {
    int64_t value = 0;
    size_t used = 0;
    try {
      value = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    STRATA_CHECK(
        used == part.size() && !part.empty() && value >= 1 && value <= strata::programs::kMaxRanks,
        "--nnodes: got \"", text,
        "\", expected N or MIN:MAX with 1 <= MIN <= MAX <= ", strata::programs::kMaxRanks);
    return static_cast<int>(value);
  };
  const size_t colon = text.find(':');
  if (colon == std::string::npos) return {number(text), number(text)};
  const int min = number(text.substr(0, colon)), max = number(text.substr(colon + 1));
  STRATA_CHECK(min <= max, "--nnodes ", text, ": MIN ", min, " is more than MAX ", max);
  return {min, max};
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    strata::run::LaunchOptions o;
    CLI::App app{
        "Starts N ranks of a strata program with a control store, like torchrun:\n"
        "  strata-run -n 2 build/examples/train_fmnist --model mlp"};
    strata::programs::configure_cli(app);
    app.prefix_command();              // everything from the program name on belongs to the program
    using namespace strata::programs;  // NOLINT(google-build-using-namespace): flag ranges
    integer_range(app.add_option("-n,--nproc,--nproc-per-node", o.nproc_per_node,
                                 "Number of ranks (on this node)"),
                  1, kMaxRanks);
    std::string nnodes = "1";
    app.add_option("--nnodes", nnodes,
                   "Number of nodes (an agent on each), or MIN:MAX: the job goes on with at "
                   "least MIN when nodes are lost, and grows back to MAX");
    integer_range(app.add_option("--node-rank", o.node_rank, "This node's rank, 0..nnodes-1"), 0,
                  kMaxRanks - 1);
    app.add_option("--rdzv", o.rdzv,
                   "HOST:PORT where node 0's agent hosts the rendezvous (several nodes)");
    app.add_option("--local-addr", o.local_addr,
                   "This node's IP address for the ranks' data plane (STRATA_GLOO_HOST)");
    real_range(app.add_option("--rdzv-timeout", o.rdzv_timeout,
                              "Seconds to wait for every node to join, and for each to report "
                              "the end of an attempt"),
               1, kMaxSeconds);
    real_range(app.add_option("--rejoin-timeout", o.rejoin_timeout,
                              "Seconds node 0 waits for every node before a relaunch; then the "
                              "job goes on with the nodes it has (at least --nnodes MIN)"),
               0, kMaxSeconds);
    integer_range(app.add_option("--max-restarts", o.max_restarts,
                                 "Relaunch the job with --resume auto after a crash, this many "
                                 "times at most"),
                  0, 1000);
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
    std::tie(o.min_nodes, o.nnodes) = parse_node_range(nnodes);
    STRATA_CHECK(!o.command.empty(),
                 "strata-run: no program given, expected strata-run -n N program [args...]");
    STRATA_CHECK(o.nnodes == 1 || o.multi_node(), "--nnodes ", o.nnodes,
                 " needs --rdzv HOST:PORT (where node 0's agent hosts the rendezvous)");
    STRATA_CHECK(o.node_rank < o.nnodes, "--node-rank ", o.node_rank, ": expected 0..",
                 o.nnodes - 1, " (--nnodes ", o.nnodes, ")");
    STRATA_CHECK(static_cast<int64_t>(o.nnodes) * o.nproc_per_node <= kMaxRanks, "--nnodes ",
                 o.nnodes, " x --nproc-per-node ", o.nproc_per_node, ": at most ", kMaxRanks,
                 " ranks in all");
    return strata::run::Agent(o).run();
  });
}
