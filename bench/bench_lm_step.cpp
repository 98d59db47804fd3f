// One fortunes-lm training step (docs/BENCHMARKS.md: 4 layers, d_model 256, 4 heads, FFN
// 1024, batch 32 x context 128, AdamW), as train_lm makes it in one process, timed with
// its variants side by side (issue 22, "The Transformer step"):
//   attention  core::causal_attention (fused) or core::causal_attention_reference
//   optimizer  core::FusedAdamW or torch::optim::AdamW
//   precision  fp32, or bf16 autocast with the casts cached per step
// and the optimizer step alone (FusedAdamW against torch::optim::AdamW, the model's
// parameters with random gradients).
//
//   build/bench/bench_lm_step                       # fp32 and bf16, 5 interleaved runs
//   build/bench/bench_lm_step --precision bf16 --profile /tmp/strata_bf16.json
//
// Each run times every variant for --steps steps after one warm-up step, one variant after
// the other, so that all see the same load; the figures are medians over --runs. With
// --profile it instead records --steps steps of the fused variant (fused attention and
// optimizer) with LibTorch's profiler
// into a chrome trace, which bench/profile_ops.py turns into a table by op (beside
// bench/lm_peer.py --profile for PyTorch's).
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <iostream>
#include <map>

#include "bench_common.h"
#include "strata/core/fused_optimizer.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/parameters.h"
#include "strata/core/precision.h"
#include "strata/core/threads.h"
#include "strata/programs/cli.h"

namespace {

namespace core = strata::core;

struct Config {
  std::vector<std::string> precisions = {"fp32", "bf16"};
  int64_t batch = 32, context = 128, layers = 4, d_model = 256, heads = 4, ffn = 1024;
  int steps = 3, runs = 5, threads = 1;
  std::string profile;  // a chrome trace path: profile instead of timing
};

class Step {
 public:
  Step(const Config& c, core::Precision precision, bool reference_attention, bool fused_optimizer)
      : precision_(precision), reference_(reference_attention) {
    torch::manual_seed(0);
    options_ = core::TransformerLMOptions()
                   .layers(c.layers)
                   .d_model(c.d_model)
                   .heads(c.heads)
                   .ffn(c.ffn)
                   .context(c.context);
    model_ = core::make_transformer_lm(options_);
    const auto adamw = torch::optim::AdamWOptions(3e-4).weight_decay(0.01);
    if (fused_optimizer)
      optimizer_ = std::make_unique<core::FusedAdamW>(core::unique_parameters(*model_), adamw);
    else
      optimizer_ = std::make_unique<torch::optim::AdamW>(core::unique_parameters(*model_), adamw);
    const auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
    tokens_ = at::randint(0, 256, {c.batch, c.context + 1}, gen, at::kLong);
  }

  double operator()() {
    core::clear_cast_cache();
    optimizer_->zero_grad();
    at::Tensor logits;
    {
      core::AutocastScope autocast(precision_);
      logits = reference_ ? forward_with_reference_attention() : model_->forward(inputs());
    }
    at::Tensor loss = core::lm_loss(core::to_full_precision(logits), targets());
    loss.backward();
    optimizer_->step();
    core::clear_cast_cache();
    return loss.item<double>();
  }

 private:
  at::Tensor inputs() const { return tokens_.narrow(1, 0, tokens_.size(1) - 1); }
  at::Tensor targets() const { return tokens_.narrow(1, 1, tokens_.size(1) - 1); }

  // The model's forward (embed, blocks, norm, head) with each block's attention computed
  // by the reference.
  at::Tensor forward_with_reference_attention() {
    const std::vector<std::shared_ptr<torch::nn::Module>> children = model_->children();
    at::Tensor x = children.front()->as<core::TokenEmbeddingImpl>()->forward(inputs());
    for (core::DecoderBlock block : core::decoder_blocks(*model_)) {
      core::CausalSelfAttention attn = block->attn;
      const at::Tensor h = x + attn->out(core::causal_attention_reference(
                                   attn->qkv(block->norm1(x)), attn->heads, 0.0, true));
      x = h +
          core::feed_forward(block->norm2(h), block->ffn_in, block->ffn_out, block->active_ffn());
    }
    x = children[children.size() - 2]->as<torch::nn::LayerNormImpl>()->forward(x);
    return children.back()->as<core::LMHeadImpl>()->forward(x);
  }

  core::Precision precision_;
  bool reference_;
  core::TransformerLMOptions options_;
  torch::nn::Sequential model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  at::Tensor tokens_;
};

void profile(const Config& c) {
  Step step(c, core::precision_from_string(c.precisions.front(), "--precision"), false, true);
  step();  // warm-up: oneDNN's kernels are made at the first call
  {
    torch::autograd::profiler::RecordProfile trace(c.profile);
    for (int i = 0; i < c.steps; ++i) step();
  }
  std::cerr << "wrote " << c.profile << " (" << c.steps << " steps)\n";
}

// The optimizer step alone: the model's parameters with fixed random gradients.
void time_optimizer(const Config& c) {
  torch::manual_seed(0);
  const auto options = core::TransformerLMOptions()
                           .layers(c.layers)
                           .d_model(c.d_model)
                           .heads(c.heads)
                           .ffn(c.ffn)
                           .context(c.context);
  torch::nn::Sequential a = core::make_transformer_lm(options),
                        b = core::make_transformer_lm(options);
  for (auto* model : {&a, &b}) {
    for (const at::Tensor& p : core::unique_parameters(**model))
      p.mutable_grad() = at::randn_like(p) * 0.01;
  }
  const auto adamw = torch::optim::AdamWOptions(3e-4).weight_decay(0.01);
  torch::optim::AdamW torch_adamw(core::unique_parameters(*a), adamw);
  core::FusedAdamW fused(core::unique_parameters(*b), adamw);
  const strata::bench::Timing t = strata::bench::time_paired(
      c.runs, 200, [&] { torch_adamw.step(); }, [&] { fused.step(); });
  nlohmann::json line =
      strata::bench::json_line("lm_step", "optimizer step: FusedAdamW vs torch AdamW",
                               1000 * t.seconds, "ms", 1000 * t.dense_seconds, t.ratio, c.runs);
  line["threads"] = c.threads;
  std::cout << line.dump() << std::endl;
}

void time(const Config& c) {
  time_optimizer(c);
  struct Variant {
    std::string name;
    std::unique_ptr<Step> step;
    std::vector<double> ms;
  };
  std::vector<Variant> variants;
  for (const std::string& p : c.precisions) {
    const core::Precision precision = core::precision_from_string(p, "--precision");
    variants.push_back({p + " reference attention, torch AdamW",
                        std::make_unique<Step>(c, precision, true, false)});
    variants.push_back(
        {p + " fused attention, torch AdamW", std::make_unique<Step>(c, precision, false, false)});
    variants.push_back(
        {p + " fused attention, FusedAdamW", std::make_unique<Step>(c, precision, false, true)});
  }
  for (Variant& v : variants) (*v.step)();  // warm-up
  for (int run = 0; run < c.runs; ++run) {
    for (Variant& v : variants) {
      strata::core::Stopwatch clock;
      for (int i = 0; i < c.steps; ++i) (*v.step)();
      v.ms.push_back(1000 * clock.seconds() / c.steps);
    }
    std::cerr << "run " << run + 1 << " of " << c.runs << " done\n";
  }
  for (size_t i = 0; i < variants.size(); i += 3) {
    const double reference = strata::bench::median(variants[i].ms);
    for (size_t j = i; j < i + 3; ++j) {
      const double ms = strata::bench::median(variants[j].ms);
      nlohmann::json line = strata::bench::json_line("lm_step", variants[j].name, ms, "ms/step",
                                                     reference, reference / ms, c.runs);
      line["threads"] = c.threads;
      line["batch"] = c.batch;
      line["context"] = c.context;
      std::cout << line.dump() << std::endl;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    Config c;
    CLI::App app{"One fortunes-lm training step: fused against reference attention."};
    strata::programs::configure_cli(app);
    app.add_option("--precision", c.precisions, "fp32 and/or bf16")
        ->check(CLI::IsMember({"fp32", "bf16"}));
    app.add_option("--batch", c.batch, "Sequences per step")->check(CLI::PositiveNumber);
    app.add_option("--context", c.context, "Tokens per sequence")->check(CLI::PositiveNumber);
    app.add_option("--steps", c.steps, "Steps per timed run (or profiled)")
        ->check(CLI::PositiveNumber);
    app.add_option("--runs", c.runs, "Interleaved runs (the median is reported)")
        ->check(CLI::PositiveNumber);
    app.add_option("--threads", c.threads, "Intra-op threads")->check(CLI::PositiveNumber);
    app.add_option("--profile", c.profile, "Write a chrome trace of the fused variant here");
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    strata::core::set_num_threads(c.threads);
    if (c.profile.empty())
      time(c);
    else
      profile(c);
    return 0;
  });
}
