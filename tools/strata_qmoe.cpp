// strata-qmoe: QMoE sub-1-bit compression of the experts of a strata checkpoint.
//
//   strata-qmoe dict --out table.bin
//   strata-qmoe synth --out ckpt --tokens-out tokens      # a synthetic MoE checkpoint
//   strata-qmoe compress --checkpoint ckpt --calibration 512 --out model.qmoe
//       [--calibration-inputs tokens] [--rtn] [--damp 0.1] [--seed 0]
//   strata-qmoe info model.qmoe
//
// dict writes the dictionary's decode table, 2 x 65536 little-endian uint32, exactly the
// `dec` table of IST-DASLab/qmoe's sub1.py that its CUDA kernel reads. compress finds
// every expert stack (P.w_in [E, hidden, d] and P.w_out [E, d, hidden], with P.b_in,
// P.b_out) in the checkpoint, quantizes it with ternary GPTQ on the Hessians of up to
// --calibration tokens per expert and writes the compressed experts (docs/qmoe.md); it
// prints one JSON line per layer and a summary line. The tokens come from
// --calibration-inputs (a checkpoint holding P.tokens [n, d] and P.experts [n] per layer,
// the routed tokens the model recorded) or else are standard normal.
#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "strata/core/checkpoint.h"
#include "strata/core/cli.h"
#include "strata/core/error.h"
#include "strata/moe/qmoe_compress.h"
#include "strata/moe/qmoe_file.h"
#include "strata/moe/ternary_dictionary.h"

namespace {

namespace moe = strata::moe;
using nlohmann::json;

// Writes `bytes` to `path` through a temporary file and a rename: never half a file.
void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    STRATA_CHECK(out.good(), tmp, ": cannot create (", std::strerror(errno), ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      STRATA_FAIL(tmp, ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    STRATA_FAIL(path, ": cannot write (", reason, ")");
  }
}

int write_dictionary(const std::string& out) {
  std::string bytes;
  for (const uint32_t word : moe::ternary_dictionary().decode_table)
    for (int b = 0; b < 4; ++b) bytes.push_back(static_cast<char>((word >> (8 * b)) & 0xFF));
  write_file_atomically(out, bytes);
  std::cout << "wrote " << out << ": " << moe::kTernaryCodewords << " codewords, " << bytes.size()
            << " bytes (2 little-endian uint32 per codeword)\n";
  return 0;
}

// A model-shaped checkpoint to try the tool on (by default fortunes-lm-moe's expert
// shape): `layers` expert stacks "blocks.<l>.moe.*"
// and one non-expert tensor; with tokens_out, recorded "routed" tokens for each layer
// (correlated, as hidden states are, and routed at random).
int write_synthetic(const std::string& out, const std::string& tokens_out, int64_t layers, int64_t experts,
                    int64_t d, int64_t hidden, int64_t tokens, uint64_t seed) {
  STRATA_CHECK(layers >= 1 && experts >= 1 && d >= 1 && hidden >= 1 && tokens >= 1,
               "synth: --layers, --experts, --d, --hidden and --tokens must be >= 1");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  strata::core::CheckpointContents model, recorded;
  model.tensors.push_back({"embed.weight", "parameter", at::randn({16, d}, gen)});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".moe";
    model.tensors.push_back({p + ".w_in", "parameter", at::randn({experts, hidden, d}, gen) / std::sqrt(double(d))});
    model.tensors.push_back({p + ".b_in", "parameter", 0.1 * at::randn({experts, hidden}, gen)});
    model.tensors.push_back({p + ".w_out", "parameter", at::randn({experts, d, hidden}, gen) / std::sqrt(double(hidden))});
    model.tensors.push_back({p + ".b_out", "parameter", 0.1 * at::randn({experts, d}, gen)});
    const at::Tensor mixing = at::randn({std::max<int64_t>(1, d / 4), d}, gen);
    recorded.tensors.push_back({p + ".tokens", "buffer",
                                at::mm(at::randn({tokens, mixing.size(0)}, gen), mixing) + 0.1 * at::randn({tokens, d}, gen)});
    recorded.tensors.push_back({p + ".experts", "buffer", at::randint(experts, {tokens}, gen)});
  }
  const json extra{{"synthetic", {{"layers", layers}, {"experts", experts}, {"d", d}, {"hidden", hidden}}}};
  strata::core::write_checkpoint(out, model, 0, extra);
  std::cout << "wrote " << out << ": " << layers << " layers of " << experts << " experts, d " << d
            << ", hidden " << hidden << "\n";
  if (!tokens_out.empty()) {
    strata::core::write_checkpoint(tokens_out, recorded, 0, extra);
    std::cout << "wrote " << tokens_out << ": " << tokens << " routed tokens per layer\n";
  }
  return 0;
}

int compress(const std::string& checkpoint, int64_t calibration, const std::string& out,
             const std::string& inputs, bool rtn, double damp, uint64_t seed) {
  STRATA_CHECK(calibration >= 1, "--calibration ", calibration, ", expected >= 1 tokens per expert");
  STRATA_CHECK(damp >= 0, "--damp ", damp, ", expected >= 0");
  json checkpoint_extra;
  const auto tensors = moe::read_checkpoint_tensors(checkpoint, &checkpoint_extra);
  const std::vector<moe::ExpertStack> stacks = moe::find_expert_stacks(tensors);
  STRATA_CHECK(!stacks.empty(), "checkpoint ", checkpoint,
               " holds no expert stacks (tensors P.w_in [E, hidden, d] and P.w_out [E, d, hidden])");
  std::unique_ptr<moe::CalibrationSource> source;
  if (inputs.empty())
    source = std::make_unique<moe::GaussianCalibration>(seed);
  else
    source = std::make_unique<moe::RecordedCalibration>(moe::read_checkpoint_tensors(inputs), inputs);

  const auto options = moe::QmoeCompressOptions()
                           .calibration_tokens(calibration)
                           .round_to_nearest(rtn)
                           .gptq(moe::TernaryGptqOptions().damp(damp));
  moe::QmoeModel model;
  int64_t bytes = 0, weights = 0;
  for (const moe::ExpertStack& stack : stacks) {
    moe::QmoeLayerReport report;
    model.layers.push_back(moe::compress_expert_stack(stack, *source, options, &report));
    std::cout << report.to_json().dump() << std::endl;
    bytes += model.layers.back().weight_bytes();
    weights += 2 * stack.experts() * stack.model_dim() * stack.hidden_dim();
  }
  model.extra = {{"checkpoint", checkpoint},
                 {"checkpoint_extra", checkpoint_extra},
                 {"method", rtn ? "round-to-nearest" : "gptq"},
                 {"damp", damp},
                 {"calibration", source->describe()},
                 {"calibration_tokens_per_expert", calibration}};
  moe::write_qmoe(out, model);
  std::cout << json{{"out", out},
                    {"layers", model.layers.size()},
                    {"weights", weights},
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
                      {"bits_per_weight", layer.bits_per_weight()}}
                     .dump()
              << "\n";
  }
  std::cout << json{{"extra", model.extra}}.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::core::run_main([&] {
    CLI::App app{"QMoE sub-1-bit compression of mixture-of-experts checkpoints."};
    strata::core::configure_cli(app);
    app.require_subcommand(1);

    std::string out, checkpoint, inputs, tokens_out, file;
    int64_t calibration = 0, layers = 2, experts = 4, d = 256, hidden = 512, tokens = 4096;
    uint64_t seed = 0;
    bool rtn = false;
    double damp = 0.1;

    CLI::App* dict_cmd = app.add_subcommand("dict", "Write the dictionary's decode table (little-endian uint32)");
    dict_cmd->add_option("--out", out, "Output file")->required();

    CLI::App* synth_cmd = app.add_subcommand("synth", "Write a synthetic MoE checkpoint (and routed tokens)");
    synth_cmd->add_option("--out", out, "Checkpoint directory to write")->required();
    synth_cmd->add_option("--tokens-out", tokens_out, "Also write recorded routed tokens here");
    synth_cmd->add_option("--layers", layers, "MoE layers")->capture_default_str();
    synth_cmd->add_option("--experts", experts, "Experts per layer")->capture_default_str();
    synth_cmd->add_option("--d", d, "Model width")->capture_default_str();
    synth_cmd->add_option("--hidden", hidden, "Expert hidden width")->capture_default_str();
    synth_cmd->add_option("--tokens", tokens, "Recorded tokens per layer")->capture_default_str();
    synth_cmd->add_option("--seed", seed, "Random seed")->capture_default_str();

    CLI::App* compress_cmd = app.add_subcommand("compress", "Compress the experts of a checkpoint");
    compress_cmd->add_option("--checkpoint", checkpoint, "strata checkpoint directory")->required();
    compress_cmd->add_option("--calibration", calibration, "Calibration tokens per expert")->required();
    compress_cmd->add_option("--out", out, "Compressed file to write (.qmoe)")->required();
    compress_cmd->add_option("--calibration-inputs", inputs,
                             "Checkpoint of recorded routed tokens (P.tokens, P.experts); default: N(0, 1)");
    compress_cmd->add_flag("--rtn", rtn, "Round to nearest instead of GPTQ (the baseline)");
    compress_cmd->add_option("--damp", damp, "GPTQ dampening, a fraction of the mean Hessian diagonal")
        ->capture_default_str();
    compress_cmd->add_option("--seed", seed, "Seed of the Gaussian calibration tokens")->capture_default_str();

    CLI::App* info_cmd = app.add_subcommand("info", "Verify a compressed file and describe its layers");
    info_cmd->add_option("file", file, "Compressed file (.qmoe)")->required();

    if (auto exit_code = strata::core::parse_cli(app, argc, argv)) return *exit_code;
    if (dict_cmd->parsed()) return write_dictionary(out);
    if (synth_cmd->parsed()) return write_synthetic(out, tokens_out, layers, experts, d, hidden, tokens, seed);
    if (compress_cmd->parsed()) return compress(checkpoint, calibration, out, inputs, rtn, damp, seed);
    return info(file);
  });
}
