// fmnist-vit under strata's number formats (the ViT quantization survey's question): test
// accuracy of a trained fmnist-vit with its Transformer blocks' weights (and, for the
// per-token rows, their Linear inputs) quantized, against the float model in the same run.
// The patch embedding and the class head stay float in every row, so that the rows differ
// only in the format. Weights are quantized after training (no quantization-aware
// training); OliVe has one scale per tensor, BitMoD one per group of 64 inputs (d_model: its blocks
// are narrower than the usual group of 128), fixed point
// a binary point per tensor from its largest weight (ap_fixed<W, I, AP_RND, AP_SAT> with the
// least I that holds it).
// {"bench":"vit-quant","case":"<format>","value":accuracy,"unit":"accuracy",
//  "baseline":float accuracy,"ratio":value/baseline,"runs":test images,"bits":weight bits}
//
//   build/examples/train_fmnist --model vit --epochs 10 --checkpoint-dir ckpt-vit
//   build/bench/bench_vit_quant --checkpoint ckpt-vit
#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <iostream>

#include "bench_common.h"
#include "strata/core/checkpoint.h"
#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/models/fmnist_vit.h"
#include "strata/core/threads.h"
#include "strata/programs/cli.h"
#include "strata/quant/activation_quant.h"
#include "strata/quant/bitmod.h"
#include "strata/quant/fixed_point.h"
#include "strata/quant/olive.h"

namespace {

namespace core = strata::core;
namespace quant = strata::quant;

struct Config {
  std::string checkpoint;
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t images = 10000;
  int threads = 1;
};

torch::nn::Sequential load_vit(const Config& c) {
  torch::nn::Sequential model = core::make_fmnist_vit();
  const std::optional<std::string> path = core::find_checkpoint(c.checkpoint);
  STRATA_CHECK(path.has_value(), "--checkpoint ", c.checkpoint,
               ": no checkpoint there (expected one written by train_fmnist --model vit)");
  core::load_checkpoint(*path, *model, nullptr);
  model->eval();
  return model;
}

double accuracy(torch::nn::Module& model, const core::FashionMnist& test, int64_t images,
                const std::function<at::Tensor(const at::Tensor&)>& forward) {
  torch::NoGradGuard no_grad;
  model.eval();
  double correct = 0;
  for (int64_t begin = 0; begin < images; begin += 500) {
    const int64_t end = std::min(begin + 500, images);
    const at::Tensor logits = forward(test.images.slice(0, begin, end));
    correct += logits.argmax(1).eq(test.labels.slice(0, begin, end)).sum().item<double>();
  }
  return correct / static_cast<double>(images);
}

// Each of the blocks' four weights replaced by f(weight).
void quantize_block_weights(torch::nn::Sequential& model,
                            const std::function<at::Tensor(const at::Tensor&)>& f) {
  torch::NoGradGuard no_grad;
  for (const core::DecoderBlock& block : core::decoder_blocks(*model)) {
    for (const torch::nn::Linear& linear :
         {block->attn->qkv, block->attn->out, block->ffn_in, block->ffn_out}) {
      linear->weight.copy_(f(linear->weight));
    }
  }
}

at::Tensor fixed_point_weight(const at::Tensor& w, int width) {
  // The least integer bits I whose range [-2^(I-1), 2^(I-1)) holds the largest weight.
  const double largest = w.abs().max().item<double>();
  const int integer_bits = static_cast<int>(std::floor(std::log2(largest))) + 2;
  return quant::fixed_point_cast(w, quant::ap_fixed(width, integer_bits, quant::QuantMode::AP_RND,
                                                    quant::OverflowMode::AP_SAT));
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    CLI::App app{
        "fmnist-vit test accuracy under QFX fixed point, OliVe, BitMoD and per-token "
        "activation quantization"};
    strata::programs::configure_cli(app);
    Config c;
    app.add_option("--checkpoint", c.checkpoint,
                   "A train_fmnist --model vit checkpoint (file or directory)")
        ->required();
    app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory");
    app.add_option("--images", c.images, "Test images to score (the first N)")
        ->check(CLI::Range(1, 10000));
    app.add_option("--threads", c.threads, "Threads")->check(CLI::Range(1, 256));
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    core::set_num_threads(c.threads);
    const core::FashionMnist test =
        core::load_fashion_mnist(c.data_dir, core::FashionMnistSplit::Test);

    torch::nn::Sequential float_model = load_vit(c);
    const auto run = [&](torch::nn::Sequential& m) {
      return [&m](const at::Tensor& x) { return m->forward(x); };
    };
    const double baseline = accuracy(*float_model, test, c.images, run(float_model));
    const auto report = [&](const std::string& name, int bits, double value) {
      nlohmann::json line = strata::bench::json_line("vit-quant", name, value, "accuracy", baseline,
                                                     value / baseline, static_cast<int>(c.images));
      line["bits"] = bits;
      std::cout << line.dump() << std::endl;
    };
    report("float", 32, baseline);

    // Weight-only formats.
    const std::vector<std::tuple<std::string, int, std::function<at::Tensor(const at::Tensor&)>>>
        weight_formats = {
            {"qfx ap_fixed<8> W8", 8, [](const at::Tensor& w) { return fixed_point_weight(w, 8); }},
            {"qfx ap_fixed<6> W6", 6, [](const at::Tensor& w) { return fixed_point_weight(w, 6); }},
            {"qfx ap_fixed<4> W4", 4, [](const at::Tensor& w) { return fixed_point_weight(w, 4); }},
            {"olive W8", 8,
             [](const at::Tensor& w) {
               return quant::olive_decode(quant::olive_encode(w, quant::OliveOptions().bits(8)));
             }},
            {"olive W4", 4,
             [](const at::Tensor& w) {
               return quant::olive_decode(quant::olive_encode(w, quant::OliveOptions().bits(4)));
             }},
            {"bitmod W4", 4,
             [](const at::Tensor& w) {
               return quant::bitmod_dequantize(
                   quant::bitmod_quantize(w, quant::BitModOptions().bits(4).group_size(64)));
             }},
            {"bitmod W3", 3, [](const at::Tensor& w) {
               return quant::bitmod_dequantize(
                   quant::bitmod_quantize(w, quant::BitModOptions().bits(3).group_size(64)));
             }}};
    for (const auto& [name, bits, f] : weight_formats) {
      torch::nn::Sequential model = load_vit(c);
      quantize_block_weights(model, f);
      report(name, bits, accuracy(*model, test, c.images, run(model)));
    }

    // Per-token activations with round-to-nearest weights (per output channel).
    const std::vector<std::tuple<std::string, int, int, quant::WeightQuant>> per_token = {
        {"per-token W8A8", 8, 8, quant::WeightQuant::RoundToNearest},
        {"per-token W4A8", 4, 8, quant::WeightQuant::RoundToNearest},
        {"per-token W4A4", 4, 4, quant::WeightQuant::RoundToNearest}};
    for (const auto& [name, weight_bits, activation_bits, weights] : per_token) {
      torch::nn::Sequential q =
          quant::quantize_transformer_lm(float_model, quant::LmQuantOptions()
                                                          .weight_bits(weight_bits)
                                                          .activation_bits(activation_bits)
                                                          .weights(weights));
      report(name, weight_bits, accuracy(*q, test, c.images, run(q)));
    }
    return 0;
  });
}
