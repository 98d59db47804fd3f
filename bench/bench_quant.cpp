// strata::quant benchmarks, in three suites (--suites, all by default):
//
// fixed: throughput of the bit-exact fixed-point cast against the plain LibTorch rounding
// a quick emulation would use, at::round(x * 2^F) / 2^F (one rounding mode, no overflow
// handling, not bit-exact), measured in the same run.
// {"bench":"quant","case":"<type> <dtype> <n>t","value":elements/s,"unit":"elements/s",
//  "baseline":elements/s of the at::round baseline,"ratio":value/baseline,"runs":n}
//
// bitmod: BitModLinear (4-bit BitMoD weights, group 128, run on the packed codes) against
// torch::matmul fp32 with the dense weight, on the bert-gemm weight shapes (BENCHMARKS.md)
// at M = 1 and 128 tokens; paired runs (bench_common.h), ratio = dense time / BitMoD time.
// {"bench":"quant","case":"bitmod-linear/<M>x<K>x<N>","threads":n,"value":GFLOP/s,
//  "unit":"GFLOP/s","baseline":dense GFLOP/s,"ratio":...,"runs":n,"kernel":"avx512-gemv"}
//
// lm: fortunes-lm validation loss with quantized activations and weights
// (activation_quant.h) against the float model, after --lm-steps training steps of the
// float model (batch 32, context 128, AdamW 3e-4); 0 steps measures the untrained model.
// {"bench":"quant","case":"fortunes-lm/a8w4-rtn","value":bits/byte,"unit":"bits/byte",
//  "baseline":float bits/byte,"ratio":value/baseline,"runs":validation batches}
//
//   build/bench/bench_quant --elements 4000000 --runs 5 --threads 1,2
//   build/bench/bench_quant --suites bitmod --threads 1 --runs 5
//   build/bench/bench_quant --suites lm --lm-steps 200
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "strata/core/data/text_corpus.h"
#include "strata/core/error.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/threads.h"
#include "strata/programs/cli.h"
#include "strata/quant/activation_quant.h"
#include "strata/quant/bitmod.h"
#include "strata/quant/fixed_point.h"

namespace {

namespace quant = strata::quant;

using nlohmann::json;

struct Config {
  std::vector<std::string> suites{"fixed", "bitmod", "lm"};
  std::vector<int> threads{1, 2};
  int runs = 5;
  // fixed
  int64_t elements = 4000000;
  std::vector<std::string> types{"ap_fixed<8,3,AP_RND,AP_SAT>", "ap_fixed<16,6>",
                                 "ap_fixed<32,8,AP_RND_CONV,AP_SAT_SYM>"};
  // bitmod
  std::vector<int64_t> tokens{1, 128};
  std::vector<std::string> shapes{"768x768", "768x3072", "3072x768"};
  double min_ms = 20;
  // lm
  int64_t lm_steps = 100;
  int64_t lm_batches = 8;
  std::string data_dir = strata::core::kFortunesDir;

  bool wants(const std::string& suite) const {
    return std::find(suites.begin(), suites.end(), suite) != suites.end();
  }
};

// Median seconds of `runs` single calls of `body`, after one untimed call.
template <typename Body>
double median_seconds(int runs, const Body& body) {
  body();
  std::vector<double> seconds;
  for (int i = 0; i < runs; ++i) seconds.push_back(strata::bench::run_once(1, body));
  return strata::bench::median(seconds);
}

void print_json(const std::string& c, int threads, double value, const std::string& unit,
                double baseline, double ratio, int runs, const std::string& kernel = "") {
  json line = strata::bench::json_line("quant", c, value, unit, baseline, ratio, runs);
  if (threads > 0) line["threads"] = threads;
  if (!kernel.empty()) line["kernel"] = kernel;
  std::cout << line.dump() << std::endl;
}

void run_fixed(const Config& c) {
  std::cout << fmt::format("{:<40} {:>6} {:>3} {:>14} {:>14} {:>6}\n", "type", "dtype", "t",
                           "cast elem/s", "round elem/s", "ratio");
  for (const std::string& text : c.types) {
    const quant::FixedPointType t = quant::parse_fixed_point_type(text);
    const double scale = std::ldexp(1.0, t.fraction_bits());
    for (const auto dtype : {torch::kFloat, torch::kDouble}) {
      const at::Tensor x = torch::randn({c.elements}, dtype) * std::ldexp(1.0, t.integer_bits - 1);
      for (const int n : c.threads) {
        strata::core::set_num_threads(n);
        const double cast_s = median_seconds(c.runs, [&] { quant::fixed_point_cast(x, t); });
        const double round_s = median_seconds(c.runs, [&] { at::round(x * scale) / scale; });
        const double value = c.elements / cast_s, baseline = c.elements / round_s;
        const std::string dtype_name = dtype == torch::kFloat ? "float" : "double";
        std::cout << fmt::format("{:<40} {:>6} {:>3} {:>14.4g} {:>14.4g} {:>6.2f}\n", text,
                                 dtype_name, n, value, baseline, value / baseline);
        print_json(fmt::format("{} {} {}t", text, dtype_name, n), 0, value, "elements/s", baseline,
                   value / baseline, c.runs);
      }
    }
  }
}

void run_bitmod(const Config& c) {
  std::cout << fmt::format("{:<24} {:>3} {:>12} {:>12} {:>7} {:>10}  {}\n",
                           "bitmod-linear M x K x N", "t", "GFLOP/s", "dense", "ratio", "us",
                           "kernel");
  for (const int n : c.threads) {
    strata::core::set_num_threads(n);
    for (const int64_t m : c.tokens)
      for (const std::string& shape : c.shapes) {
        const auto [k, out] = strata::bench::parse_shape(shape);
        torch::manual_seed(0);
        const at::Tensor x = at::randn({m, k});
        const at::Tensor w = at::randn({out, k}) / std::sqrt(double(k));  // a Linear's [out, in]
        const at::Tensor wt = w.t().contiguous();
        quant::BitModLinear layer(w, at::Tensor());
        const auto t = strata::bench::time_paired(
            c.runs, c.min_ms, [&] { return torch::matmul(x, wt); }, [&] { return layer(x); });
        const double flops = 2.0 * double(m) * double(k) * double(out);
        const double gflops = flops / t.seconds * 1e-9, dense = flops / t.dense_seconds * 1e-9;
        const std::string name = fmt::format("{}x{}x{}", m, k, out);
        std::cout << fmt::format("{:<24} {:>3} {:>12.2f} {:>12.2f} {:>6.2f}x {:>10.1f}  {}\n", name,
                                 n, gflops, dense, t.ratio, t.seconds * 1e6, layer->kernel(m));
        print_json("bitmod-linear/" + name, n, gflops, "GFLOP/s", dense, t.ratio, c.runs,
                   layer->kernel(m));
      }
  }
}

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

void run_lm(const Config& c) {
  namespace core = strata::core;
  strata::core::set_num_threads(c.threads.front());
  const core::TextCorpus corpus = core::TextCorpus::load(c.data_dir);
  const core::TransformerLMOptions options;  // fortunes-lm: 4 layers, d_model 256, context 128
  torch::manual_seed(0);
  torch::nn::Sequential lm = core::make_transformer_lm(options);
  torch::optim::AdamW optimizer(core::unique_parameters(*lm), torch::optim::AdamWOptions(3e-4));
  const at::Generator train_gen = generator(1);
  for (int64_t step = 0; step < c.lm_steps; ++step) {
    const auto [x, y] = corpus.sample_batch(true, 32, options.context(), train_gen);
    optimizer.zero_grad();
    core::lm_loss(lm->forward(x), y).backward();
    optimizer.step();
  }
  lm->eval();
  // The same validation batches for every variant.
  std::vector<std::pair<at::Tensor, at::Tensor>> batches;
  const at::Generator val_gen = generator(2);
  for (int64_t b = 0; b < c.lm_batches; ++b)
    batches.push_back(corpus.sample_batch(false, 32, options.context(), val_gen));
  auto bits_per_byte = [&](torch::nn::Sequential& model) {
    torch::NoGradGuard no_grad;
    double sum = 0;
    for (const auto& [x, y] : batches) sum += core::lm_loss(model->forward(x), y).item<double>();
    return core::bits_per_byte(sum / double(batches.size()));
  };
  const double baseline = bits_per_byte(lm);
  using quant::LmQuantOptions;
  auto a_w = [](int a, int w) { return LmQuantOptions().activation_bits(a).weight_bits(w); };
  const auto bitmod = quant::WeightQuant::BitMod;
  const std::vector<std::pair<std::string, LmQuantOptions>> variants = {
      {"a8w8-rtn", a_w(8, 8)},
      {"a8w4-rtn", a_w(8, 4)},
      {"a8w4-bitmod", a_w(8, 4).weights(bitmod)},
      {"a4w4-rtn", a_w(4, 4)},
      {"a4w4-bitmod", a_w(4, 4).weights(bitmod)},
      {"a8w4-bitmod-prune10-attention", a_w(8, 4).weights(bitmod).prune_ratio(0.1)},
      {"a8w4-bitmod-prune10-magnitude",
       a_w(8, 4).weights(bitmod).prune_ratio(0.1).score(quant::TokenScore::Magnitude)},
  };
  std::cout << fmt::format("# fortunes-lm after {} training steps: float {:.4f} bits/byte\n",
                           c.lm_steps, baseline);
  for (const auto& [name, o] : variants) {
    torch::nn::Sequential q = quant::quantize_transformer_lm(lm, o);
    const double value = bits_per_byte(q);
    std::cout << fmt::format("{:<34} {:.4f} bits/byte ({:+.2f}%)\n", name, value,
                             100.0 * (value / baseline - 1.0));
    print_json(fmt::format("fortunes-lm/{}/steps{}", name, c.lm_steps), c.threads.front(), value,
               "bits/byte", baseline, value / baseline, int(c.lm_batches));
  }
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    CLI::App app{"strata::quant benchmarks: fixed-point cast, BitModLinear, quantized fortunes-lm"};
    strata::programs::configure_cli(app);
    Config c;
    app.add_option("--suites", c.suites, "Suites to run: fixed bitmod lm")->delimiter(',');
    app.add_option("--runs", c.runs, "Timed runs per figure (median)")->check(CLI::PositiveNumber);
    app.add_option("--threads", c.threads, "Thread counts (intra-op and OpenBLAS)")->delimiter(',');
    app.add_option("--elements", c.elements, "fixed: elements per tensor")
        ->check(CLI::PositiveNumber);
    app.add_option("--types", c.types, "fixed: types to cast to")->delimiter(';');
    app.add_option("--tokens", c.tokens, "bitmod: token counts M")->delimiter(',');
    app.add_option("--shapes", c.shapes, "bitmod: KxN weight shapes")->delimiter(',');
    app.add_option("--min-ms", c.min_ms, "bitmod: minimum milliseconds per timed run");
    app.add_option("--lm-steps", c.lm_steps, "lm: training steps before measuring (0: untrained)");
    app.add_option("--lm-batches", c.lm_batches, "lm: validation batches of 32 x 128")
        ->check(CLI::PositiveNumber);
    app.add_option("--data-dir", c.data_dir, "lm: the fortunes text directory");
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    STRATA_CHECK(!c.threads.empty(), "--threads: expected at least one thread count");
    for (const std::string& suite : c.suites)
      STRATA_CHECK(suite == "fixed" || suite == "bitmod" || suite == "lm",
                   "--suites: unknown suite '", suite, "', expected fixed, bitmod or lm");

    torch::manual_seed(0);
    if (c.wants("fixed")) run_fixed(c);
    if (c.wants("bitmod")) run_bitmod(c);
    if (c.wants("lm")) run_lm(c);
    return 0;
  });
}
