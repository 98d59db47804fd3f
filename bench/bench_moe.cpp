// Mixture-of-experts dispatch and combine: the sorted dispatch of MoELayer (stable sort of
// the token copies by expert, index_select, index_add) against GShard's one-hot einsum
// dispatch (a [tokens, experts, capacity] dispatch tensor and two einsums), at 4096 tokens
// of d_model 256 and 16 experts, top-2, capacity factor 1.25 (BENCHMARKS.md, issue 7).
//
//   build/bench/bench_moe                         # threads 1 and 2, 5 runs
//   build/bench/bench_moe --threads 1 --tokens 4096 --experts 16 --runs 7
//
// Both sides start from the same routing (the router's cost is the same for both and left
// out) and include their capacity bookkeeping: keep_within_capacity for the sorted path,
// GShard's cumulative-sum positions for the einsum. The experts are the identity, so the
// figure is the cost of moving tokens to their experts and back; the two outputs are
// checked equal before timing. Each of --runs runs times the einsum and then the sorted
// path back to back; the ratio is the median of the per-run ratios (the machine is shared).
// Expert-parallel training throughput is bench/bench_moe_ep.sh (train_lm --moe).
#include <torch/torch.h>

#include <cstdio>
#include <iostream>

#include "bench_common.h"
#include "strata/core/threads.h"
#include "strata/moe/moe_layer.h"
#include "strata/moe/router.h"
#include "strata/programs/cli.h"

namespace {

namespace moe = strata::moe;

struct Config {
  std::vector<int> threads{1, 2};
  int64_t tokens = 4096;
  int64_t experts = 16;
  int64_t d_model = 256;
  int64_t top_k = 2;
  double capacity_factor = 1.25;
  int runs = 5;
  double min_ms = 50;
};

// Sorted dispatch and combine of identity experts: MoELayer's path.
at::Tensor sorted_dispatch(const at::Tensor& x, moe::Routing routing, const Config& c) {
  routing.kept = moe::keep_within_capacity(routing.expert_index, routing.weight, c.experts,
                                           routing.capacity, moe::DropPriority::Order);
  const moe::SortedDispatch dispatch = moe::sort_by_expert(routing, c.experts);
  const at::Tensor x_sorted = x.index_select(0, dispatch.token);
  return moe::combine(x_sorted, routing, dispatch, x.size(0));
}

// GShard's dispatch: positions by cumulative sums over one-hot masks, first choices before
// second choices (the same priority as DropPriority::Order), a [N, E, C] combine tensor,
// expert inputs [E, C, d] = einsum(dispatch, x), output = einsum(combine, expert outputs).
at::Tensor einsum_dispatch(const at::Tensor& x, const moe::Routing& routing, const Config& c) {
  const int64_t n = x.size(0), capacity = routing.capacity;
  at::Tensor combine = at::zeros({n, c.experts, capacity}, x.options());
  at::Tensor filled = at::zeros({c.experts}, x.options());
  for (int64_t s = 0; s < c.top_k; ++s) {
    at::Tensor mask = at::one_hot(routing.expert_index.select(1, s), c.experts).to(x.dtype());
    const at::Tensor position = at::cumsum(mask, 0) - 1 + filled;
    filled = filled + mask.sum(0);
    mask = mask * (position < capacity).to(x.dtype());
    const at::Tensor slot = (position * mask).sum(1).to(at::kLong);  // [N]
    const at::Tensor gate = routing.weight.select(1, s) * mask.sum(1);
    combine = combine + gate.view({n, 1, 1}) * mask.unsqueeze(2) *
                            at::one_hot(slot, capacity).to(x.dtype()).unsqueeze(1);
  }
  const at::Tensor dispatch = (combine > 0).to(x.dtype());
  const at::Tensor expert_inputs = at::einsum("nec,nd->ecd", {dispatch, x});
  return at::einsum("nec,ecd->nd", {combine, expert_inputs});
}

void run(const Config& c, int threads) {
  strata::core::set_num_threads(threads);
  torch::manual_seed(0);
  moe::Router router(
      moe::RouterOptions(c.d_model, c.experts).top_k(c.top_k).capacity_factor(c.capacity_factor));
  const at::Tensor x = at::randn({c.tokens, c.d_model});
  moe::Routing routing;
  {
    torch::NoGradGuard no_grad;
    routing = router(x);
  }
  torch::NoGradGuard no_grad;
  const at::Tensor sorted = sorted_dispatch(x, routing, c);
  const at::Tensor einsum = einsum_dispatch(x, routing, c);
  STRATA_CHECK(at::allclose(sorted, einsum, 1e-4, 1e-5),
               "bench_moe: the sorted and einsum dispatches disagree by ",
               (sorted - einsum).abs().max().item<double>());

  const auto t = strata::bench::time_paired(
      c.runs, c.min_ms, [&] { einsum_dispatch(x, routing, c); },
      [&] { sorted_dispatch(x, routing, c); });
  std::printf(
      "dispatch+combine %lld tokens x %lld, %lld experts, top-%lld, capacity %lld, "
      "%d thread(s): sorted %8.3f ms  one-hot einsum %8.3f ms  %6.1fx\n",
      static_cast<long long>(c.tokens), static_cast<long long>(c.d_model),
      static_cast<long long>(c.experts), static_cast<long long>(c.top_k),
      static_cast<long long>(routing.capacity), threads, t.seconds * 1e3, t.dense_seconds * 1e3,
      t.ratio);
  nlohmann::json line =
      strata::bench::json_line("moe", "dispatch-combine/sorted-vs-einsum", t.seconds * 1e3, "ms",
                               t.dense_seconds * 1e3, t.ratio, c.runs);
  line["threads"] = threads;
  line["tokens"] = c.tokens;
  line["d_model"] = c.d_model;
  line["experts"] = c.experts;
  line["top_k"] = c.top_k;
  line["capacity"] = routing.capacity;
  std::cout << line.dump() << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    Config c;
    CLI::App app{"MoE dispatch and combine: sorted (MoELayer) against a one-hot einsum."};
    strata::programs::configure_cli(app);
    app.add_option("--threads", c.threads, "Thread counts to run with")->check(CLI::PositiveNumber);
    app.add_option("--tokens", c.tokens, "Tokens routed")->check(CLI::PositiveNumber);
    app.add_option("--experts", c.experts, "Experts")->check(CLI::PositiveNumber);
    app.add_option("--d-model", c.d_model, "Token width")->check(CLI::PositiveNumber);
    app.add_option("--top-k", c.top_k, "Experts per token")->check(CLI::PositiveNumber);
    app.add_option("--capacity-factor", c.capacity_factor, "Capacity factor (> 0)")
        ->check(CLI::PositiveNumber);
    app.add_option("--runs", c.runs, "Paired runs (the median is reported)")
        ->check(CLI::PositiveNumber);
    app.add_option("--min-ms", c.min_ms, "Minimum length of each timed run")
        ->check(CLI::PositiveNumber);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    for (int threads : c.threads) run(c, threads);
    return 0;
  });
}
