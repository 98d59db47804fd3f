// QMoE benchmarks (strata::moe), two suites (--suites, both by default):
//
// trained: one expert FFN of fortunes-lm-moe's shape (d 256, hidden 512), initialized as
// the MoE layer's experts, trained briefly on a teacher task with correlated inputs, then
// compressed with ternary GPTQ (Hessians from --calibration training inputs) and with
// round-to-nearest: bits per parameter of the compressed weights (codes, row offsets, levels;
// biases not counted), and the task's held-out loss with the compressed expert against the dense
// one (the loss gap).
// {"bench":"qmoe","case":"trained-expert/gptq/bits","value":bits/param,"unit":"bits/param",
//  "baseline":32,"ratio":32/value,"runs":1}
// {"bench":"qmoe","case":"trained-expert/gptq/loss","value":MSE,"unit":"mse",
//  "baseline":dense MSE,"ratio":value/baseline,"runs":validation batches}
//
// speed: the compressed matvec (1 token) and batch matmul (32 tokens) against dense fp32
// (at::mv and at::mm on OpenBLAS with the same threads) and dense bf16 (at::matmul of bf16
// weights and inputs, oneDNN), paired runs (bench_common.h), ratio = baseline time /
// compressed time; "path" is what ran: the one-token kernel on 2-bit masks (CompressedLinear's
// default), or on the code stream ("stream"; "stream-fitted": with a dictionary fitted to
// the weight's codes, timed against the stream with the reference dictionary: the
// decode speed of the two). Weights: ternary round-to-nearest of a Gaussian [N, K]
// weight (timing depends on the share of zeros, reported as bits/param).
// {"bench":"qmoe","case":"matvec/1x256x512","threads":1,"value":us,"unit":"us",
//  "baseline":dense us,"ratio":...,"runs":n,"kernel":"avx512","path":"masks",
//  "baseline_is":"dense fp32","bits_per_param":...}
//
//   build/bench/bench_qmoe --runs 5 --threads 1,2
//   build/bench/bench_qmoe --suites speed --shapes 2048x768 --tokens 1
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "strata/core/error.h"
#include "strata/core/threads.h"
#include "strata/moe/compressed_expert.h"
#include "strata/moe/qmoe_compress.h"
#include "strata/moe/ternary_gptq.h"
#include "strata/programs/cli.h"

namespace {

namespace moe = strata::moe;
using nlohmann::json;

struct Config {
  std::vector<std::string> suites{"trained", "speed"};
  std::vector<int> threads{1, 2};
  int runs = 5;
  double min_ms = 20;
  // trained
  int64_t d = 256, hidden = 512, train_steps = 300, batch = 256, calibration = 4096;
  // speed
  std::vector<std::string> shapes{"256x512", "512x256", "768x2048", "2048x768"};
  std::vector<int64_t> tokens{1, 32};
  std::string kernel = "auto";

  bool wants(const std::string& suite) const {
    return std::find(suites.begin(), suites.end(), suite) != suites.end();
  }
};

void print(json line) { std::cout << line.dump() << std::endl; }

// A teacher FFN on inputs with a few strong correlated directions (as hidden states
// have); the student expert learns to imitate it.
struct TeacherTask {
  at::Tensor mixing, w1, w2;
  at::Generator gen;
  TeacherTask(int64_t d, int64_t hidden, uint64_t seed)
      : gen(at::make_generator<at::CPUGeneratorImpl>(seed)) {
    mixing = at::randn({d / 8, d}, gen) / std::sqrt(double(d / 8));
    w1 = at::randn({hidden, d}, gen) / std::sqrt(double(d));
    w2 = at::randn({d, hidden}, gen) / std::sqrt(double(hidden));
  }
  at::Tensor inputs(int64_t n) {
    return at::mm(at::randn({n, mixing.size(0)}, gen), mixing) +
           0.1 * at::randn({n, mixing.size(1)}, gen);
  }
  at::Tensor target(const at::Tensor& x) { return at::linear(at::gelu(at::linear(x, w1)), w2); }
};

void trained_suite(const Config& c) {
  torch::manual_seed(0);
  TeacherTask task(c.d, c.hidden, 1);
  torch::nn::Linear in(c.d, c.hidden), out(c.hidden, c.d);
  {
    // Initialized as the MoE layer initializes its experts (GPT-2's N(0, 0.02), zero
    // biases): the share of zeros after ternary quantization depends on the weights'
    // distribution (torch's default uniform init would give about half zeros).
    torch::NoGradGuard no_grad;
    for (auto* linear : {&in, &out}) {
      (*linear)->weight.normal_(0.0, 0.02);
      (*linear)->bias.zero_();
    }
  }
  std::vector<at::Tensor> params = in->parameters();
  for (const auto& p : out->parameters()) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(3e-4));  // fortunes-lm's optimizer
  double loss_value = 0;
  for (int64_t step = 0; step < c.train_steps; ++step) {
    const at::Tensor x = task.inputs(c.batch);
    opt.zero_grad();
    const at::Tensor loss = torch::mse_loss(out->forward(at::gelu(in->forward(x))), task.target(x));
    loss.backward();
    opt.step();
    loss_value = loss.item<double>();
  }
  std::cerr << "trained expert " << c.d << "x" << c.hidden << ": " << c.train_steps
            << " steps, training loss " << loss_value << "\n";

  torch::NoGradGuard no_grad;
  moe::ExpertStack stack{"expert", in->weight.detach().unsqueeze(0), in->bias.detach().unsqueeze(0),
                         out->weight.detach().unsqueeze(0), out->bias.detach().unsqueeze(0)};
  moe::RecordedCalibration calibration({{"expert.tokens", task.inputs(c.calibration)},
                                        {"expert.experts", at::zeros({c.calibration}, at::kLong)}},
                                       "training inputs");
  const int batches = 8;
  std::vector<at::Tensor> val_x;
  for (int b = 0; b < batches; ++b) val_x.push_back(task.inputs(1024));
  double dense_loss = 0;
  for (const auto& x : val_x)
    dense_loss +=
        torch::mse_loss(out->forward(at::gelu(in->forward(x))), task.target(x)).item<double>() /
        batches;
  for (const bool rtn : {false, true}) {
    const std::string method = rtn ? "rtn" : "gptq";
    moe::QmoeLayerReport report;
    const moe::QmoeLayer layer = moe::compress_expert_stack(
        stack, calibration,
        moe::QmoeCompressOptions().calibration_tokens(c.calibration).round_to_nearest(rtn),
        &report);
    moe::CompressedExperts compressed = moe::make_compressed_experts(layer);
    double loss = 0;
    for (const auto& x : val_x)
      loss += torch::mse_loss(compressed->forward(0, x), task.target(x)).item<double>() / batches;
    const std::string name =
        "trained-expert-" + std::to_string(c.d) + "x" + std::to_string(c.hidden) + "/" + method;
    print(strata::bench::json_line("qmoe", name + "/bits", layer.bits_per_weight(), "bits/param",
                                   32, 32 / layer.bits_per_weight(), 1));
    print(strata::bench::json_line("qmoe", name + "/loss", loss, "mse", dense_loss,
                                   loss / dense_loss, batches));
    const at::Tensor codes = moe::ternary_decode_codes(layer.w_in[0]);
    // The same codes in a dictionary fitted to them (compress_expert_stack's
    // fitted_dictionary, without running GPTQ again).
    const at::Tensor codes_out = moe::ternary_decode_codes(layer.w_out[0]);
    const auto fitted =
        moe::make_ternary_dictionary(moe::fit_pair_probabilities({codes, codes_out}));
    const double fitted_bits =
        8.0 *
        double(
            moe::ternary_encode(codes, layer.w_in[0].levels.to(at::kFloat), fitted).nbytes() +
            moe::ternary_encode(codes_out, layer.w_out[0].levels.to(at::kFloat), fitted).nbytes()) /
        double(2 * c.d * c.hidden);
    print(strata::bench::json_line("qmoe", name + "/fitted-bits", fitted_bits, "bits/param", 32,
                                   32 / fitted_bits, 1));
    std::cerr << method << ": " << layer.bits_per_weight() << " bits/param (fitted dictionary "
              << fitted_bits << "), zeros in w_in "
              << (codes == 0).to(at::kFloat).mean().item<double>() << ", validation MSE " << loss
              << " (dense " << dense_loss << ")\n";
  }
}

moe::TernaryKernel kernel_named(const std::string& name) {
  for (const auto k : {moe::TernaryKernel::Auto, moe::TernaryKernel::Reference,
                       moe::TernaryKernel::Portable, moe::TernaryKernel::Avx512})
    if (moe::to_string(k) == name) return k;
  STRATA_FAIL("--kernel ", name, ": expected auto, reference, portable or avx512");
}

void speed_suite(const Config& c) {
  const moe::TernaryKernel kernel = kernel_named(c.kernel);
  const std::string kernel_used = moe::to_string(moe::resolve_kernel(kernel));
  for (const auto& shape : c.shapes) {
    const auto [k, n] = strata::bench::parse_shape(shape);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    const at::Tensor dense = at::randn({n, k}, gen) / std::sqrt(double(k));
    const moe::TernaryQuantized q = moe::ternary_round_to_nearest(dense.unsqueeze(0));
    const moe::TernaryMatrix m = moe::ternary_encode(q.codes[0], q.levels[0]);
    const moe::TernaryMatrix fitted = moe::ternary_encode(
        q.codes[0], q.levels[0],
        moe::make_ternary_dictionary(moe::fit_pair_probabilities({q.codes[0]})));
    const at::Tensor levels = m.levels.to(at::kFloat).contiguous();
    const at::Tensor masks = moe::ternary_masks(m);
    const at::Tensor w = q.dequantized()[0].contiguous();  // the dense fp32 expert
    const at::Tensor w_bf16 = w.to(at::kBFloat16);
    for (const int64_t tokens : c.tokens) {
      const at::Tensor x = at::randn({tokens, k}, gen);
      const at::Tensor x0 = x[0].contiguous();
      const at::Tensor x_bf16 = x.to(at::kBFloat16), x0_bf16 = x0.to(at::kBFloat16);
      const std::string shape_name =
          std::to_string(tokens) + "x" + std::to_string(k) + "x" + std::to_string(n);
      for (const int threads : c.threads) {
        strata::core::set_num_threads(threads);
        at::Tensor sink;
        const auto fp32 = [&] { sink = tokens == 1 ? at::mv(w, x0) : at::mm(x, w.t()); };
        const auto bf16 = [&] {
          sink = tokens == 1 ? at::matmul(w_bf16, x0_bf16) : at::matmul(x_bf16, w_bf16.t());
        };
        // What CompressedLinear runs by default: the masks for one token, else the stream.
        const auto compressed = [&] { sink = moe::ternary_linear(m, levels, x, kernel, masks); };
        const auto stream = [&] { sink = moe::ternary_linear(m, levels, x, kernel); };
        const auto stream_fitted = [&] { sink = moe::ternary_linear(fitted, levels, x, kernel); };
        const auto emit = [&](const std::string& name, const strata::bench::Timing& t,
                              const std::string& baseline, const std::string& path) {
          json line = strata::bench::json_line("qmoe", name, t.seconds * 1e6, "us",
                                               t.dense_seconds * 1e6, t.ratio, c.runs);
          line["threads"] = threads;
          line["kernel"] = kernel_used;
          line["path"] = path;
          line["baseline_is"] = baseline;
          line["bits_per_param"] =
              path == "stream-fitted" ? fitted.bits_per_weight() : m.bits_per_weight();
          print(line);
        };
        const std::string op = tokens == 1 ? "matvec/" : "matmul/";
        emit(op + shape_name, strata::bench::time_paired(c.runs, c.min_ms, fp32, compressed),
             "dense fp32", tokens == 1 ? "masks" : "stream");
        emit(op + "bf16/" + shape_name,
             strata::bench::time_paired(c.runs, c.min_ms, bf16, compressed), "dense bf16",
             tokens == 1 ? "masks" : "stream");
        if (tokens == 1)
          emit(op + "stream/" + shape_name,
               strata::bench::time_paired(c.runs, c.min_ms, fp32, stream), "dense fp32", "stream");
        // Decode speed of the fitted dictionary against the reference one.
        emit(op + "fitted/" + shape_name,
             strata::bench::time_paired(c.runs, c.min_ms, stream, stream_fitted),
             "stream, reference dictionary", "stream-fitted");
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    CLI::App app{
        "QMoE benchmarks: bits per parameter and loss gap of a trained expert, compressed vs dense "
        "speed."};
    strata::programs::configure_cli(app);
    Config c;
    app.add_option("--suites", c.suites, "trained, speed")->delimiter(',')->capture_default_str();
    app.add_option("--threads", c.threads, "Thread counts (speed)")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--runs", c.runs, "Paired runs per figure")->capture_default_str();
    app.add_option("--min-ms", c.min_ms, "Least milliseconds per timed run")->capture_default_str();
    app.add_option("--train-steps", c.train_steps, "Training steps of the expert")
        ->capture_default_str();
    app.add_option("--calibration", c.calibration, "Calibration tokens")->capture_default_str();
    app.add_option("--shapes", c.shapes, "KxN expert shapes (in x out)")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--tokens", c.tokens, "Tokens per product (speed)")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--kernel", c.kernel, "auto, reference, portable or avx512")
        ->capture_default_str();
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    STRATA_CHECK(c.runs >= 1, "--runs ", c.runs, ", expected >= 1");
    for (const auto& s : c.suites)
      STRATA_CHECK(s == "trained" || s == "speed", "--suites ", s, ": expected trained or speed");
    strata::core::set_num_threads(c.threads.front());
    if (c.wants("trained")) trained_suite(c);
    if (c.wants("speed")) speed_suite(c);
    return 0;
  });
}
