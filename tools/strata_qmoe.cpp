// strata-qmoe: QMoE sub-1-bit compression of the experts of a strata checkpoint.
//
//   strata-qmoe dict --out table.bin
//   strata-qmoe synth --out ckpt --tokens-out tokens      # a synthetic MoE checkpoint
//   strata-qmoe compress --checkpoint ckpt --calibration 512 --out model.qmoe
//       [--calibration-inputs tokens] [--rtn] [--damp 0.1] [--seed 0]
//       [--dictionary reference|fitted]
//   strata-qmoe info model.qmoe
//   strata-qmoe eval --checkpoint ckpt --compressed model.qmoe [--batches 20] [--batch 32]
//
// dict writes the dictionary's decode table, 2 x 65536 little-endian uint32, exactly the
// `dec` table of IST-DASLab/qmoe's sub1.py that its CUDA kernel reads. compress finds
// every expert stack (P.w_in [E, hidden, d] and P.w_out [E, d, hidden], with P.b_in,
// P.b_out) in the checkpoint, quantizes it with ternary GPTQ on the Hessians of up to
// --calibration tokens per expert and writes the compressed experts (docs/qmoe.md); it
// prints one JSON line per layer and a summary line. The tokens come from
// --calibration-inputs (a checkpoint holding P.tokens [n, d] and P.experts [n] per layer,
// the routed tokens the model recorded) or else are standard normal. A fortunes-lm-moe
// checkpoint (examples/train_lm --moe) is calibrated on the model itself instead: the
// model reads --calibration sequences of the training text (--data-dir) and every token
// its routers send to an expert goes into that expert's Hessian.
//
// eval scores a fortunes-lm-moe checkpoint and the same model with the experts of a
// compressed file on train_lm's validation windows and prints one JSON line: both
// validation losses, the gap and the bits per weight of the compressed experts.
#include <fcntl.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "strata/core/checkpoint.h"
#include "strata/core/data/text_corpus.h"
#include "strata/core/error.h"
#include "strata/core/memory.h"
#include "strata/core/models/lm_validation.h"
#include "strata/core/output_files.h"
#include "strata/moe/qmoe_compress.h"
#include "strata/moe/qmoe_file.h"
#include "strata/moe/qmoe_lm.h"
#include "strata/moe/ternary_dictionary.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/output_flags.h"

namespace {

namespace moe = strata::moe;
using nlohmann::json;

int write_dictionary(const std::string& out) {
  std::string bytes;
  for (const uint32_t word : moe::ternary_dictionary().decode_table)
    for (int b = 0; b < 4; ++b) bytes.push_back(static_cast<char>((word >> (8 * b)) & 0xFF));
  strata::core::write_file_atomically(out, bytes);
  std::cout << "wrote " << out << ": " << moe::kTernaryCodewords << " codewords, " << bytes.size()
            << " bytes (2 little-endian uint32 per codeword)\n";
  return 0;
}

// A model-shaped checkpoint to try the tool on (by default fortunes-lm-moe's expert
// shape): `layers` expert stacks "blocks.<l>.moe.*"
// and one non-expert tensor; with tokens_out, recorded "routed" tokens for each layer
// (correlated, as hidden states are, and routed at random).
int write_synthetic(const std::string& out, const std::string& tokens_out, int64_t layers,
                    int64_t experts, int64_t d, int64_t hidden, int64_t tokens, uint64_t seed) {
  STRATA_CHECK(layers >= 1 && experts >= 1 && d >= 1 && hidden >= 1 && tokens >= 1,
               "synth: --layers, --experts, --d, --hidden and --tokens must be >= 1");
  // Every layer is in memory at once (w_in, w_out and biases; the recorded tokens).
  using strata::core::saturating_add, strata::core::saturating_product;
  const int64_t per_layer = saturating_add(saturating_product({2, experts, hidden, d}),
                                           saturating_product({experts, hidden + d}));
  const int64_t recorded_floats = tokens_out.empty() ? 0 : saturating_product({2, tokens, d});
  strata::core::check_fits(
      "synth: --layers " + std::to_string(layers) + " of --experts " + std::to_string(experts) +
          " x --d " + std::to_string(d) + " x --hidden " + std::to_string(hidden) +
          (tokens_out.empty() ? "" : " and --tokens " + std::to_string(tokens)),
      saturating_product({4, layers, saturating_add(per_layer, recorded_floats)}));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  strata::core::CheckpointContents model, recorded;
  model.tensors.push_back({"embed.weight", "parameter", at::randn({16, d}, gen)});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".moe";
    model.tensors.push_back(
        {p + ".w_in", "parameter", at::randn({experts, hidden, d}, gen) / std::sqrt(double(d))});
    model.tensors.push_back({p + ".b_in", "parameter", 0.1 * at::randn({experts, hidden}, gen)});
    model.tensors.push_back({p + ".w_out", "parameter",
                             at::randn({experts, d, hidden}, gen) / std::sqrt(double(hidden))});
    model.tensors.push_back({p + ".b_out", "parameter", 0.1 * at::randn({experts, d}, gen)});
    const at::Tensor mixing = at::randn({std::max<int64_t>(1, d / 4), d}, gen);
    recorded.tensors.push_back({p + ".tokens", "buffer",
                                at::mm(at::randn({tokens, mixing.size(0)}, gen), mixing) +
                                    0.1 * at::randn({tokens, d}, gen)});
    recorded.tensors.push_back({p + ".experts", "buffer", at::randint(experts, {tokens}, gen)});
  }
  const json extra{
      {"synthetic", {{"layers", layers}, {"experts", experts}, {"d", d}, {"hidden", hidden}}}};
  strata::core::write_checkpoint(out, model, 0, extra);
  std::cout << "wrote " << out << ": " << layers << " layers of " << experts << " experts, d " << d
            << ", hidden " << hidden << "\n";
  if (!tokens_out.empty()) {
    strata::core::write_checkpoint(tokens_out, recorded, 0, extra);
    std::cout << "wrote " << tokens_out << ": " << tokens << " routed tokens per layer\n";
  }
  return 0;
}

// What compress needs to know about the calibration.
struct CompressFlags {
  std::string checkpoint, out, inputs, data_dir = strata::core::kFortunesDir;
  bool overwrite = false;
  int64_t calibration = 0;  // sequences for a fortunes-lm-moe, else tokens per expert
  bool rtn = false;
  double damp = 0.1;
  uint64_t seed = 0;
  std::string dictionary = "reference";
};

bool is_fortunes_lm_moe(const json& extra) {
  return extra.is_object() && extra.value("model", "") == "fortunes-lm-moe";
}

// The routed tokens of a fortunes-lm-moe reading f.calibration training sequences: all of
// them are kept, so the tokens per expert are at most sequences x context x top-k.
std::unique_ptr<moe::CalibrationSource> model_calibration(const CompressFlags& f,
                                                          int64_t* tokens_per_expert) {
  moe::LoadedMoETransformerLM lm = moe::load_moe_transformer_lm(f.checkpoint);
  // Every routed token is kept: sequences x context x top-k per layer, d floats each.
  *tokens_per_expert =
      strata::core::saturating_product({f.calibration, lm.options.context(), lm.moe.top_k()});
  strata::core::check_fits("--calibration " + std::to_string(f.calibration) +
                               " sequences (x context " + std::to_string(lm.options.context()) +
                               " x top-k " + std::to_string(lm.moe.top_k()) +
                               " routed tokens per layer)",
                           strata::core::saturating_product(
                               {*tokens_per_expert, lm.options.d_model(), lm.options.layers(), 4}));
  const strata::core::TextCorpus corpus = strata::core::TextCorpus::load(f.data_dir);
  moe::RoutedTokenRecorder recorder(*tokens_per_expert);
  moe::record_routed_tokens(lm.model, corpus, f.calibration, lm.options.context(), f.seed,
                            recorder);
  return std::make_unique<moe::RecordedCalibration>(
      recorder.tensors(), "fortunes-lm-moe routing of " + std::to_string(f.calibration) +
                              " sequences of " + f.data_dir + " (seed " + std::to_string(f.seed) +
                              ")");
}

int compress(const CompressFlags& f) {
  STRATA_CHECK(f.calibration >= 1, "--calibration ", f.calibration, ", expected >= 1");
  STRATA_CHECK(f.damp >= 0, "--damp ", f.damp, ", expected >= 0");
  json checkpoint_extra;
  const auto tensors = moe::read_checkpoint_tensors(f.checkpoint, &checkpoint_extra);
  const std::vector<moe::ExpertStack> stacks = moe::find_expert_stacks(tensors);
  STRATA_CHECK(
      !stacks.empty(), "checkpoint ", f.checkpoint,
      " holds no expert stacks (tensors P.w_in [E, hidden, d] and P.w_out [E, d, hidden])");
  std::unique_ptr<moe::CalibrationSource> source;
  int64_t tokens_per_expert = f.calibration;
  if (f.inputs.empty() && !is_fortunes_lm_moe(checkpoint_extra)) {
    // Each expert's Gaussian tokens are made at once ([tokens, d] floats, and GPTQ's copy).
    int64_t width = 0;
    for (const moe::ExpertStack& stack : stacks) width = std::max(width, stack.model_dim());
    strata::core::check_fits("--calibration " + std::to_string(f.calibration) +
                                 " Gaussian tokens per expert of width " + std::to_string(width),
                             strata::core::saturating_product({f.calibration, width, 8}));
  }
  if (!f.inputs.empty())
    source = std::make_unique<moe::RecordedCalibration>(moe::read_checkpoint_tensors(f.inputs),
                                                        f.inputs);
  else if (is_fortunes_lm_moe(checkpoint_extra))
    source = model_calibration(f, &tokens_per_expert);
  else
    source = std::make_unique<moe::GaussianCalibration>(f.seed);

  const auto options = moe::QmoeCompressOptions()
                           .calibration_tokens(tokens_per_expert)
                           .round_to_nearest(f.rtn)
                           .fitted_dictionary(f.dictionary == "fitted")
                           .gptq(moe::TernaryGptqOptions().damp(f.damp));
  moe::QmoeModel model;
  int64_t bytes = 0, weights = 0;
  for (const moe::ExpertStack& stack : stacks) {
    moe::QmoeLayerReport report;
    model.layers.push_back(moe::compress_expert_stack(stack, *source, options, &report));
    std::cout << report.to_json().dump() << std::endl;
    bytes += model.layers.back().weight_bytes();
    weights += 2 * stack.experts() * stack.model_dim() * stack.hidden_dim();
  }
  model.extra = {{"checkpoint", f.checkpoint},
                 {"checkpoint_extra", checkpoint_extra},
                 {"method", f.rtn ? "round-to-nearest" : "gptq"},
                 {"damp", f.damp},
                 {"dictionary", f.dictionary},
                 {"calibration", source->describe()},
                 {"calibration_tokens_per_expert", tokens_per_expert}};
  moe::write_qmoe(f.out, model);
  std::cout << json{{"out", f.out},
                    {"layers", model.layers.size()},
                    {"weights", weights},
                    {"compressed_bytes", bytes},
                    {"bits_per_weight", 8.0 * double(bytes) / double(weights)}}
                   .dump()
            << std::endl;
  return 0;
}

// Validation loss of the dense checkpoint and of its compressed twin, one model in memory
// at a time.
int evaluate(const std::string& checkpoint, const std::string& compressed, int64_t batches,
             int64_t batch, const std::string& data_dir) {
  STRATA_CHECK(batches >= 1, "--batches ", batches, ", expected >= 1");
  STRATA_CHECK(batch >= 1, "--batch ", batch, ", expected >= 1");
  const strata::core::TextCorpus corpus = strata::core::TextCorpus::load(data_dir);
  torch::NoGradGuard no_grad;
  const auto loss_of = [&](moe::LoadedMoETransformerLM& lm) {
    lm.model->eval();
    return strata::core::validation_loss(corpus, batches, batch, lm.options.context(),
                                         [&](const at::Tensor& x) { return lm.model->forward(x); });
  };
  // The compressed model first: a file that does not fit the checkpoint fails at once.
  moe::LoadedMoETransformerLM small = moe::load_compressed_moe_lm(checkpoint, compressed);
  const double compressed_loss = loss_of(small);
  const int64_t context = small.options.context();
  int64_t bytes = 0, weights = 0;
  for (moe::MoELayerImpl* layer : moe::moe_layers(*small.model)) {
    const moe::CompressedExperts& experts = layer->compressed_experts();
    bytes += experts->weight_bytes();
    weights += 2 * experts->size() * experts->model_dim() * experts->hidden_dim();
  }
  small = {};
  moe::LoadedMoETransformerLM dense = moe::load_moe_transformer_lm(checkpoint);
  const double dense_loss = loss_of(dense);
  std::cout << json{{"checkpoint", checkpoint},
                    {"compressed", compressed},
                    {"validation_batches", batches},
                    {"batch", batch},
                    {"context", context},
                    {"dense_val_loss", dense_loss},
                    {"compressed_val_loss", compressed_loss},
                    {"val_loss_gap", compressed_loss - dense_loss},
                    {"expert_weights", weights},
                    {"compressed_bytes", bytes},
                    {"bits_per_weight", 8.0 * double(bytes) / double(weights)}}
                   .dump()
            << std::endl;
  return 0;
}

int info(const std::string& path) {
  const moe::QmoeModel model = moe::read_qmoe(path);
  for (const moe::QmoeLayer& layer : model.layers) {
    std::cout << json{{"layer", layer.name},
                      {"experts", layer.experts()},
                      {"d", layer.model_dim()},
                      {"hidden", layer.hidden_dim()},
                      {"dictionary", layer.fitted() ? "fitted" : "reference"},
                      {"bits_per_weight", layer.bits_per_weight()}}
                     .dump()
              << "\n";
  }
  std::cout << json{{"extra", model.extra}}.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    CLI::App app{"QMoE sub-1-bit compression of mixture-of-experts checkpoints."};
    strata::programs::configure_cli(app);
    app.require_subcommand(1);

    std::string out, tokens_out, file, compressed, eval_checkpoint,
        eval_data_dir = strata::core::kFortunesDir;
    int64_t layers = 2, experts = 4, d = 256, hidden = 512, tokens = 4096, batches = 20, batch = 32;
    uint64_t seed = 0;
    bool overwrite = false;
    CompressFlags cf;

    CLI::App* dict_cmd =
        app.add_subcommand("dict", "Write the dictionary's decode table (little-endian uint32)");
    dict_cmd->add_option("--out", out, "Output file")->required();
    strata::programs::add_overwrite_flag(*dict_cmd, overwrite);

    CLI::App* synth_cmd =
        app.add_subcommand("synth", "Write a synthetic MoE checkpoint (and routed tokens)");
    synth_cmd->add_option("--out", out, "Checkpoint directory to write")->required();
    synth_cmd->add_option("--tokens-out", tokens_out, "Also write recorded routed tokens here");
    strata::programs::add_overwrite_flag(*synth_cmd, overwrite);
    using namespace strata::programs;  // NOLINT(google-build-using-namespace): flag ranges
    integer_range(synth_cmd->add_option("--layers", layers, "MoE layers"), 1, kMaxLayers);
    integer_range(synth_cmd->add_option("--experts", experts, "Experts per layer"), 1, kMaxLayers);
    integer_range(synth_cmd->add_option("--d", d, "Model width"), 1, kMaxWidth);
    integer_range(synth_cmd->add_option("--hidden", hidden, "Expert hidden width"), 1, kMaxWidth);
    integer_range(synth_cmd->add_option("--tokens", tokens, "Recorded tokens per layer"), 1,
                  kMaxTokens);
    integer_range(synth_cmd->add_option("--seed", seed, "Random seed"), 0, kMaxSeed);

    CLI::App* compress_cmd = app.add_subcommand("compress", "Compress the experts of a checkpoint");
    compress_cmd->add_option("--checkpoint", cf.checkpoint, "strata checkpoint directory")
        ->required();
    integer_range(compress_cmd
                      ->add_option("--calibration", cf.calibration,
                                   "fortunes-lm-moe: training sequences the model reads for "
                                   "calibration; other checkpoints: calibration tokens per expert")
                      ->required(),
                  1, kMaxTokens);
    compress_cmd->add_option("--out", cf.out, "Compressed file to write (.qmoe)")->required();
    strata::programs::add_overwrite_flag(*compress_cmd, cf.overwrite);
    compress_cmd->add_option(
        "--calibration-inputs", cf.inputs,
        "Checkpoint of recorded routed tokens (P.tokens, P.experts); default: the "
        "model's own routing for fortunes-lm-moe, else N(0, 1)");
    compress_cmd
        ->add_option("--data-dir", cf.data_dir, "Text a fortunes-lm-moe reads for calibration")
        ->capture_default_str();
    compress_cmd->add_flag("--rtn", cf.rtn, "Round to nearest instead of GPTQ (the baseline)");
    compress_cmd
        ->add_option("--dictionary", cf.dictionary,
                     "reference: QMoE's dictionary (for 88.5% zeros; the reference kernels read "
                     "it); fitted: one fitted to each layer's ternary codes, stored in the file")
        ->check(CLI::IsMember({"reference", "fitted"}))
        ->capture_default_str();
    real_range(compress_cmd->add_option("--damp", cf.damp,
                                        "GPTQ dampening, a fraction of the mean Hessian diagonal"),
               0, kMaxDamp);
    integer_range(compress_cmd->add_option("--seed", cf.seed,
                                           "Seed of the calibration sequences or Gaussian tokens"),
                  0, kMaxSeed);

    CLI::App* eval_cmd = app.add_subcommand(
        "eval",
        "Validation loss of a fortunes-lm-moe checkpoint, dense and with its compressed experts");
    eval_cmd->add_option("--checkpoint", eval_checkpoint, "fortunes-lm-moe checkpoint directory")
        ->required();
    eval_cmd->add_option("--compressed", compressed, "Its compressed experts (.qmoe)")->required();
    integer_range(eval_cmd->add_option("--batches", batches,
                                       "Validation batches (train_lm's --eval-batches)"),
                  1, kMaxSteps);
    integer_range(eval_cmd->add_option("--batch", batch, "Windows per batch (train_lm's --batch)"),
                  1, kMaxBatch);
    eval_cmd->add_option("--data-dir", eval_data_dir, "Text whose validation split is scored")
        ->capture_default_str();

    CLI::App* info_cmd =
        app.add_subcommand("info", "Verify a compressed file and describe its layers");
    info_cmd->add_option("file", file, "Compressed file (.qmoe)")->required();

    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    // Before any work: an output never replaces an input or a file the user did not offer.
    // And that it can be written: a bad path fails now, not after the work (an existing
    // checkpoint directory or file that --overwrite lets synth replace is written over).
    using strata::core::check_output;
    using strata::core::check_writable;
    using strata::core::OutputKind;
    if (dict_cmd->parsed()) {
      check_output("--out", out, {}, overwrite);
      check_writable("--out", out, OutputKind::File, /*creates_parents=*/false);
      return write_dictionary(out);
    }
    if (synth_cmd->parsed()) {
      STRATA_CHECK(tokens_out != out, "--tokens-out ", tokens_out, ": is also --out");
      check_output("--out", out, {}, overwrite);
      check_output("--tokens-out", tokens_out, {}, overwrite);
      for (const auto& [flag, path] :
           {std::pair{"--out", out}, std::pair{"--tokens-out", tokens_out}})
        if (!std::filesystem::exists(path)) check_writable(flag, path, OutputKind::Directory);
      return write_synthetic(out, tokens_out, layers, experts, d, hidden, tokens, seed);
    }
    if (compress_cmd->parsed()) {
      check_output("--out", cf.out, {cf.checkpoint, cf.inputs}, cf.overwrite);
      check_writable("--out", cf.out, OutputKind::File, /*creates_parents=*/false);
      return compress(cf);
    }
    if (eval_cmd->parsed())
      return evaluate(eval_checkpoint, compressed, batches, batch, eval_data_dir);
    return info(file);
  });
}
