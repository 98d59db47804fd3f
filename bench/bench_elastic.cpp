// MatFormer (fortunes-lm-mat) figures, as a table and JSON lines:
//
//   quality  validation loss of each granularity and of the slowly changing Mix'n'Match
//            submodels against their parameters, against dense models trained alone with
//            the same steps (--dense), and how often each submodel's greedy next byte
//            agrees with the full model's.
//   speed    forward time of each granularity (extracted, dense) against the full model,
//            next to its FLOP ratio.
//   extract  strata-extract on a 100M-parameter synthetic universal checkpoint: wall time
//            and peak resident memory against the submodel's size.
//
//   scripts/bench_elastic.sh   # trains the models, then runs this and plots
//   build/bench/bench_elastic --universal mat/step-00000300 --dense d1024/step-00000300,...
//   build/bench/bench_elastic --suites extract     # needs no trained model
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "bench_common.h"
#include "strata/core/checkpoint.h"
#include "strata/core/data/text_corpus.h"
#include "strata/core/error.h"
#include "strata/core/models/lm_validation.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/elastic/extract.h"
#include "strata/programs/cli.h"

namespace {

namespace core = strata::core;
namespace elastic = strata::elastic;
namespace fs = std::filesystem;

struct Flags {
  std::vector<std::string> suites = {"quality", "speed", "extract"};
  std::string universal;
  std::vector<std::string> dense;
  int64_t batches = 10;
  int runs = 5;
  int threads = 1;
  std::string extract_bin;
  std::string scratch = "/tmp/strata-bench-elastic";
};

void print(const nlohmann::json& line) { std::cout << line.dump() << std::endl; }

// The validation windows train_lm scores (core::validation_loss's), kept in memory so that
// every submodel's loss and agreement is measured on the same tensors.
std::vector<std::pair<at::Tensor, at::Tensor>> validation_batches(
    const core::TransformerLMOptions& o, int64_t batches) {
  const core::TextCorpus corpus = core::TextCorpus::load();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(core::kValidationSeed);
  std::vector<std::pair<at::Tensor, at::Tensor>> out;
  for (int64_t i = 0; i < batches; ++i)
    out.push_back(corpus.sample_batch(false, 32, o.context(), gen));
  return out;
}

struct Scores {
  double loss = 0;
  double agreement = 0;  // fraction of positions whose argmax equals the reference's
};

// Loss of `model` (whatever submodel is applied) on the batches, and agreement of its
// greedy predictions with `reference` (argmax per position, one tensor per batch).
Scores score(torch::nn::Sequential& model,
             const std::vector<std::pair<at::Tensor, at::Tensor>>& data,
             const std::vector<at::Tensor>& reference) {
  torch::NoGradGuard no_grad;
  model->eval();
  Scores s;
  for (size_t i = 0; i < data.size(); ++i) {
    const at::Tensor logits = model->forward(data[i].first);
    s.loss += core::lm_loss(logits, data[i].second).item<double>();
    if (!reference.empty())
      s.agreement += logits.argmax(-1).eq(reference[i]).to(at::kDouble).mean().item<double>();
  }
  s.loss /= static_cast<double>(data.size());
  s.agreement /= static_cast<double>(data.size());
  return s;
}

void quality(const Flags& f) {
  core::CheckpointReader reader(f.universal);
  const elastic::MatFormerCheckpoint info = elastic::read_matformer_checkpoint(reader);
  core::LoadedTransformerLM universal = core::load_transformer_lm(f.universal);
  const auto data = validation_batches(info.model, f.batches);

  std::vector<at::Tensor> reference;
  {
    torch::NoGradGuard no_grad;
    universal.model->eval();
    for (const auto& [x, y] : data) reference.push_back(universal.model->forward(x).argmax(-1));
  }
  std::map<int64_t, double> dense_loss;  // by FFN width
  for (const std::string& path : f.dense) {
    core::LoadedTransformerLM dense = core::load_transformer_lm(path);
    const Scores s = score(dense.model, data, {});
    dense_loss[dense.options.ffn()] = s.loss;
    nlohmann::json line = strata::bench::json_line("elastic", "dense", s.loss, "nats", 0, 0, 1);
    line["ffn"] = dense.options.ffn();
    line["parameters"] = elastic::count_parameters(dense.options);
    line["steps"] = dense.step;
    print(line);
  }

  std::cout << fmt::format("{:<42} {:>10} {:>8} {:>8} {:>7} {:>9}\n", "submodel", "parameters",
                           "loss", "dense", "ratio", "agreement");
  const auto report = [&](const std::string& kind, const elastic::ScoredSubmodel& m) {
    elastic::apply_submodel(*universal.model, m.submodel);
    const Scores s = score(universal.model, data, reference);
    const bool uniform = std::all_of(m.submodel.ffn.begin(), m.submodel.ffn.end(),
                                     [&](int64_t w) { return w == m.submodel.ffn[0]; });
    const auto dense = uniform ? dense_loss.find(m.submodel.ffn[0]) : dense_loss.end();
    const double base = dense == dense_loss.end() ? 0.0 : dense->second;
    std::cout << fmt::format(
        "{:<42} {:>10} {:>8.4f} {:>8} {:>7} {:>8.1f}%\n", m.submodel.describe(), m.parameters,
        s.loss, base > 0 ? fmt::format("{:.4f}", base) : "",
        base > 0 ? fmt::format("{:.3f}", s.loss / base) : "", 100 * s.agreement);
    nlohmann::json line = strata::bench::json_line("elastic", kind, s.loss, "nats", base,
                                                   base > 0 ? s.loss / base : 0.0, 1);
    line["submodel"] = m.submodel.to_json();
    line["parameters"] = m.parameters;
    line["flops"] = m.flops;
    line["agreement"] = s.agreement;
    line["steps"] = universal.step;
    print(line);
  };
  for (const elastic::Granularity& g : info.granularities)
    report("granularity",
           elastic::measure_submodel(info.model, elastic::Submodel::uniform(info.model, g)));
  for (const auto& m : elastic::slowly_changing_submodels(info.model, info.granularities)) {
    const bool uniform = std::all_of(m.submodel.ffn.begin(), m.submodel.ffn.end(),
                                     [&](int64_t w) { return w == m.submodel.ffn[0]; });
    if (!uniform) report("mix_n_match", m);
  }
  elastic::reset_submodel(*universal.model);
}

void speed(const Flags& f) {
  core::CheckpointReader reader(f.universal);
  const elastic::MatFormerCheckpoint info = elastic::read_matformer_checkpoint(reader);
  fs::create_directories(f.scratch);
  core::LoadedTransformerLM full = core::load_transformer_lm(f.universal);
  const double full_flops = elastic::forward_flops(info.model, info.model.context());
  std::cout << fmt::format("\n{:<10} {:>6} {:>12} {:>10} {:>10}\n", "FFN", "batch", "ms/forward",
                           "time ratio", "FLOP ratio");
  for (const elastic::Granularity& g : info.granularities) {
    const std::string path = f.scratch + "/g" + std::to_string(g.ffn);
    elastic::extract_submodel(f.universal, elastic::Submodel::uniform(info.model, g), path);
    core::LoadedTransformerLM sub = core::load_transformer_lm(path);
    const double flops = elastic::forward_flops(sub.options, info.model.context());
    for (const int64_t batch : {1, 32}) {
      const at::Tensor x =
          at::randint(0, info.model.vocab(), {batch, info.model.context()}, at::kLong);
      torch::NoGradGuard no_grad;
      full.model->eval();
      sub.model->eval();
      const auto t = strata::bench::time_paired(
          f.runs, 200, [&] { full.model->forward(x); }, [&] { sub.model->forward(x); });
      std::cout << fmt::format("{:<10} {:>6} {:>12.2f} {:>10.3f} {:>10.3f}\n", g.ffn, batch,
                               1e3 * t.seconds, 1 / t.ratio, flops / full_flops);
      nlohmann::json line = strata::bench::json_line("elastic", "forward", 1e3 * t.seconds, "ms",
                                                     1e3 * t.dense_seconds, t.ratio, f.runs);
      line["ffn"] = g.ffn;
      line["batch"] = batch;
      line["flop_ratio"] = flops / full_flops;
      line["threads"] = f.threads;
      print(line);
    }
  }
}

// Runs `argv` as a child process; returns its wall seconds and peak resident bytes.
std::pair<double, int64_t> run_child(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::cout.flush();  // or the child would inherit and print the unflushed output again
  std::fflush(stdout);
  core::Stopwatch watch;
  const pid_t pid = fork();
  STRATA_CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  STRATA_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, args[0], " failed (status ", status,
               ")");
  return {watch.seconds(), static_cast<int64_t>(usage.ru_maxrss) * 1024};
}

void extract(const Flags& f) {
  // 8 layers of d_model 1024, 16 heads, FFN 4096: 101M parameters (404 MB of float32).
  const auto options = core::TransformerLMOptions().d_model(1024).heads(16).ffn(4096).layers(8);
  const std::string universal = f.scratch + "/synthetic-100m";
  fs::create_directories(f.scratch);
  {
    torch::nn::Sequential lm = core::make_transformer_lm(options);
    nlohmann::json extra = core::transformer_lm_to_json(options);
    extra["matformer"] = elastic::matformer_to_json(elastic::matformer_granularities(options, {}));
    core::save_checkpoint(universal, *lm, nullptr, 0, extra);
  }
  std::cout << fmt::format("\nsynthetic universal checkpoint: {} parameters, {:.0f} MB\n",
                           elastic::count_parameters(options),
                           fs::file_size(universal + "/tensors.bin") / 1e6);
  // The cost of starting the tool (LibTorch's libraries) apart from extracting.
  std::vector<double> base_rss;
  for (int r = 0; r < 3; ++r)
    base_rss.push_back(static_cast<double>(
        run_child({f.extract_bin, "--checkpoint", universal, "--list"}).second));
  const double baseline = strata::bench::median(base_rss);
  std::cout << fmt::format("{:>6} {:>12} {:>8} {:>14} {:>14} {:>8}\n", "FFN", "submodel MB",
                           "seconds", "peak RSS MB", "RSS - base MB", "x size");
  for (const int64_t ffn : {2048, 1024, 512}) {
    const std::string out = f.scratch + "/extracted-" + std::to_string(ffn);
    std::vector<double> seconds, rss;
    for (int r = 0; r < 3; ++r) {
      const auto [s, bytes] = run_child({f.extract_bin, "--checkpoint", universal, "--granularity",
                                         std::to_string(ffn), "--out", out});
      seconds.push_back(s);
      rss.push_back(static_cast<double>(bytes));
    }
    const double size = static_cast<double>(fs::file_size(out + "/tensors.bin"));
    const double peak = strata::bench::median(rss);
    std::cout << fmt::format("{:>6} {:>12.0f} {:>8.2f} {:>14.0f} {:>14.0f} {:>8.2f}\n", ffn,
                             size / 1e6, strata::bench::median(seconds), peak / 1e6,
                             (peak - baseline) / 1e6, peak / size);
    nlohmann::json line = strata::bench::json_line("elastic", "extract",
                                                   strata::bench::median(seconds), "s", 0, 0, 3);
    line["ffn"] = ffn;
    line["submodel_bytes"] = size;
    line["peak_rss_bytes"] = peak;
    line["tool_baseline_rss_bytes"] = baseline;
    print(line);
    fs::remove_all(out);
  }
  fs::remove_all(universal);
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    Flags f;
    f.extract_bin = (fs::path(argv[0]).parent_path() / "../tools/strata-extract").string();
    CLI::App app{"MatFormer benchmarks: quality of submodels, forward time, extraction."};
    strata::programs::configure_cli(app);
    app.add_option("--suites", f.suites, "quality, speed, extract")->delimiter(',');
    app.add_option("--universal", f.universal, "MatFormer checkpoint (train_lm --matformer)");
    app.add_option("--dense", f.dense, "Dense checkpoints trained alone, one per FFN width")
        ->delimiter(',');
    app.add_option("--batches", f.batches, "Validation batches of 32 x context")
        ->check(CLI::PositiveNumber);
    app.add_option("--runs", f.runs, "Timing runs (median)")->check(CLI::PositiveNumber);
    app.add_option("--threads", f.threads, "Threads")->check(CLI::PositiveNumber);
    app.add_option("--extract-bin", f.extract_bin, "strata-extract program");
    app.add_option("--scratch", f.scratch, "Scratch directory for extracted checkpoints");
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    core::set_num_threads(f.threads);
    for (const std::string& suite : f.suites) {
      STRATA_CHECK(suite == "quality" || suite == "speed" || suite == "extract",
                   "--suites: unknown '", suite, "', expected quality, speed or extract");
      STRATA_CHECK(suite == "extract" || !f.universal.empty(), "--suites ", suite,
                   " needs --universal");
      if (suite == "quality") quality(f);
      if (suite == "speed") speed(f);
      if (suite == "extract") extract(f);
    }
    return 0;
  });
}
