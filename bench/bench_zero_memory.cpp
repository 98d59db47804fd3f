// The model state a rank holds with DDP and ZeRO 1/2/3 (issue 18, "Memory"): a fortunes-lm
// Transformer of about 100M parameters (--d-model 1024 --layers 8, FFN 4x) trained a few
// steps with AdamW through HybridParallel, as train_lm would with --zero, on every rank of
// the MPI world. Rank 0 prints one JSON line: state_bytes (parameters, gradients and AdamW
// state of a rank, the largest over the ranks) and peak_rss_mb (the largest peak resident
// set). bench/bench_zero_memory.sh runs it for DDP and each stage at 2 and 4 ranks.
//
//   mpirun -np 2 build/bench/bench_zero_memory --zero 3 --d-model 1024 --layers 8
#include <sys/resource.h>
#include <torch/torch.h>

#include <iostream>

#include "strata/core/models/transformer_lm.h"
#include "strata/core/threads.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/programs/cli.h"

namespace {

double max_over(strata::parallel::Communicator& comm, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.allreduce(t, strata::parallel::ReduceOp::Max)->wait();
  return t.item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    int zero = 0, steps = 3, threads = 1;
    int64_t d_model = 1024, layers = 8, batch = 2, context = 64;
    CLI::App app{"Model state and peak memory per rank: DDP against ZeRO 1/2/3 (mpirun)."};
    strata::programs::configure_cli(app);
    app.add_option("--zero", zero, "ZeRO stage; 0: DDP")->check(CLI::Range(0, 3));
    app.add_option("--d-model", d_model, "Model width")->check(CLI::PositiveNumber);
    app.add_option("--layers", layers, "Decoder blocks")->check(CLI::PositiveNumber);
    app.add_option("--batch", batch, "Sequences per rank and step")->check(CLI::PositiveNumber);
    app.add_option("--context", context, "Tokens per sequence")->check(CLI::PositiveNumber);
    app.add_option("--steps", steps, "Training steps")->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "Intra-op threads")->check(CLI::PositiveNumber);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    strata::core::set_num_threads(threads);
    auto world = strata::parallel::MpiCommunicator::world();
    const auto options = strata::core::TransformerLMOptions()
                             .d_model(d_model)
                             .layers(layers)
                             .heads(d_model / 64)
                             .ffn(4 * d_model)
                             .context(context);
    torch::manual_seed(0);
    torch::nn::Sequential lm = strata::core::make_transformer_lm(options);
    int64_t parameters = 0;
    for (const auto& p : lm->parameters()) parameters += p.numel();
    const at::Tensor tokens = torch::randint(0, options.vocab(), {batch, context + 1});
    const at::Tensor inputs = tokens.narrow(1, 0, context), targets = tokens.narrow(1, 1, context);
    strata::parallel::HybridParallel model(
        lm, world, strata::core::lm_loss, inputs,
        strata::parallel::HybridParallelOptions().zero_stage(zero));
    torch::optim::AdamW optimizer(model.parameters(), torch::optim::AdamWOptions(1e-4));
    for (int step = 0; step < steps; ++step) {
      const double loss = model.train_step(inputs, targets, optimizer);
      if (world->rank() == 0)
        std::cerr << "zero " << zero << " on " << world->size() << " ranks: step " << step + 1
                  << "/" << steps << " loss " << loss << std::endl;
    }
    const double state_bytes = max_over(*world, static_cast<double>(model.state_bytes(optimizer)));
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const double peak_rss_mb = max_over(*world, static_cast<double>(usage.ru_maxrss) / 1024.0);
    if (world->rank() == 0) {
      std::cout << nlohmann::json{{"bench", "zero_memory"},     {"zero", zero},
                                  {"ranks", world->size()},     {"parameters", parameters},
                                  {"state_bytes", state_bytes}, {"peak_rss_mb", peak_rss_mb}}
                       .dump()
                << std::endl;
    }
    return 0;
  });
}
