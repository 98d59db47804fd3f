#pragma once
// QMoE compression of the experts a strata checkpoint holds: find the expert stacks by
// name, collect per-expert Hessians from calibration inputs, ternary GPTQ, dictionary
// coding. The calibration inputs come from a CalibrationSource, so that the same code
// runs on recorded tokens, synthetic ones, or (wired by the MoE model) the tokens the
// router actually sends to each expert.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "strata/moe/qmoe_file.h"
#include "strata/moe/ternary_gptq.h"

namespace strata::moe {

// The experts of one MoE layer as stacked parameters, torch Linear layout:
// w_in [E, hidden, d], b_in [E, hidden], w_out [E, d, hidden], b_out [E, d];
// expert e computes w_out[e] . gelu(w_in[e] . x + b_in[e]) + b_out[e].
struct ExpertStack {
  std::string name;  // the prefix P of P.w_in, P.b_in, P.w_out, P.b_out
  at::Tensor w_in, b_in, w_out, b_out;

  int64_t experts() const { return w_in.size(0); }
  int64_t model_dim() const { return w_in.size(2); }
  int64_t hidden_dim() const { return w_in.size(1); }
};

// Every P with 3-D tensors P.w_in and P.w_out among `tensors`, checked for the shapes
// above, in name order. A missing P.b_in or P.b_out is a bias of zeros.
std::vector<ExpertStack> find_expert_stacks(const std::map<std::string, at::Tensor>& tensors);

// The parameters and buffers of a strata checkpoint (core/checkpoint.h) by name, fully
// verified as load_checkpoint verifies them; `extra`, when not null, gets its extra JSON.
std::map<std::string, at::Tensor> read_checkpoint_tensors(const std::string& path,
                                                          nlohmann::json* extra = nullptr);

// Where the inputs that reach an expert come from.
class CalibrationSource {
 public:
  virtual ~CalibrationSource() = default;
  // float [n, d], n <= max_tokens (n may be 0): inputs that reach expert `expert` of
  // `stack`, i.e. the tokens its router sends there, after whatever the layer applies
  // before its experts (a layer norm).
  virtual at::Tensor expert_inputs(const ExpertStack& stack, int64_t expert,
                                   int64_t max_tokens) = 0;
  virtual std::string describe() const = 0;
};

// Standard normal tokens, seeded by the layer's name, expert and `seed`: the input
// statistics of a model are unknown, so GPTQ has no correlations to exploit and does
// about what round-to-nearest does. For tests and for a model with no data at hand.
class GaussianCalibration : public CalibrationSource {
 public:
  explicit GaussianCalibration(uint64_t seed = 0) : seed_(seed) {}
  at::Tensor expert_inputs(const ExpertStack& stack, int64_t expert, int64_t max_tokens) override;
  std::string describe() const override;

 private:
  uint64_t seed_;
};

// Recorded routed tokens: for each layer P, "P.tokens" float [n, d] (each token as its
// experts see it) and "P.experts" int64 [n] (the expert it was routed to; a token routed
// to k experts appears k times). E.g. a strata checkpoint written by the model's routing
// hook, read with read_checkpoint_tensors. The first max_tokens of each expert are used.
class RecordedCalibration : public CalibrationSource {
 public:
  RecordedCalibration(std::map<std::string, at::Tensor> tensors, std::string origin);
  at::Tensor expert_inputs(const ExpertStack& stack, int64_t expert, int64_t max_tokens) override;
  std::string describe() const override { return "recorded tokens from " + origin_; }

 private:
  std::map<std::string, at::Tensor> tensors_;
  std::string origin_;
};

// Collects the routed tokens of calibration forward passes, for the model's routing hook
// to call: record(layer, tokens, experts) per layer and step. Keeps the first
// max_tokens_per_expert tokens of each expert of each layer, then gives them to
// compress_expert_stack (calibration()) or saves them for `strata-qmoe compress
// --calibration-inputs` (save(), a strata checkpoint with P.tokens and P.experts).
class RoutedTokenRecorder {
 public:
  explicit RoutedTokenRecorder(int64_t max_tokens_per_expert = 4096);

  // tokens [n, d]: what the experts of `layer` receive (after the layer's pre-expert
  // norm); experts [n] int64: where each row goes (a token sent to k experts is k rows).
  void record(const std::string& layer, const at::Tensor& tokens, const at::Tensor& experts);

  // The recorded tokens as "P.tokens" / "P.experts" tensors, per layer P.
  std::map<std::string, at::Tensor> tensors() const;
  RecordedCalibration calibration() const {
    return RecordedCalibration(tensors(), "recorded routing");
  }
  void save(const std::string& path) const;
  int64_t tokens(const std::string& layer, int64_t expert) const;

 private:
  struct Layer {
    std::vector<at::Tensor> tokens, experts;
    std::vector<int64_t> counts;  // per expert
  };
  int64_t max_tokens_per_expert_;
  std::map<std::string, Layer> layers_;
};

struct QmoeCompressOptions {
  // Calibration tokens per expert (the most taken from the source).
  TORCH_ARG(int64_t, calibration_tokens) = 512;
  TORCH_ARG(TernaryGptqOptions, gptq) = {};
  // Round-to-nearest instead of GPTQ (the baseline).
  TORCH_ARG(bool, round_to_nearest) = false;
  // Code the layer with a dictionary fitted to its own ternary codes (stored in the
  // .qmoe file) instead of QMoE's reference dictionary (built for 88.5% zeros).
  TORCH_ARG(bool, fitted_dictionary) = false;
};

// What compressing one layer did.
struct QmoeLayerReport {
  std::string name;
  int64_t experts = 0, d = 0, hidden = 0;
  int64_t calibration_tokens = 0;  // over all experts
  int64_t rounded_to_nearest = 0;  // experts (w_in and w_out counted apart) GPTQ skipped
  double bits_per_weight = 0;
  // Share of the ternary weights (w_in and w_out of all experts) that are zero: the
  // dictionary is built for 0.885, and fewer zeros cost more bits per weight.
  double zero_fraction = 0;
  bool fitted_dictionary = false;
  // ||ffn_q(X) - ffn(X)||^2 / ||ffn(X)||^2 over the calibration tokens of all experts.
  double relative_output_error = 0;
  nlohmann::json to_json() const;
};

// Compresses one layer: Hessians of w_in from the calibration tokens, of w_out from the
// hidden activations gelu(w_in x + b_in) of the dense expert (both at once, as QMoE does
// by default), batched ternary GPTQ, then the dictionary coding (with a dictionary fitted
// to the layer's codes when options.fitted_dictionary()).
QmoeLayer compress_expert_stack(const ExpertStack& stack, CalibrationSource& calibration,
                                const QmoeCompressOptions& options = {},
                                QmoeLayerReport* report = nullptr);

}  // namespace strata::moe
