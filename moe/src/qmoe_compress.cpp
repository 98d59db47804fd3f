#include "strata/moe/qmoe_compress.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"

namespace strata::moe {

using nlohmann::json;

namespace {

// A module holding one tensor per checkpoint entry under its dotted name, so that
// load_checkpoint (and all its checks) can fill it without the model's code.
class TensorTree : public torch::nn::Module {
 public:
  void add(const std::string& dotted, const at::Tensor& tensor, bool parameter) {
    const size_t dot = dotted.find('.');
    if (dot == std::string::npos) {
      if (parameter)
        register_parameter(dotted, tensor, /*requires_grad=*/false);
      else
        register_buffer(dotted, tensor);
      return;
    }
    const std::string head = dotted.substr(0, dot);
    auto it = children_.find(head);
    if (it == children_.end())
      it = children_.emplace(head, register_module(head, std::make_shared<TensorTree>())).first;
    it->second->add(dotted.substr(dot + 1), tensor, parameter);
  }

 private:
  std::map<std::string, std::shared_ptr<TensorTree>> children_;
};

at::Tensor bias_or_zeros(const std::map<std::string, at::Tensor>& tensors, const std::string& name,
                         at::IntArrayRef shape) {
  const auto it = tensors.find(name);
  if (it == tensors.end()) return at::zeros(shape);
  STRATA_CHECK(it->second.sizes() == shape, "tensor '", name, "' of shape ", it->second.sizes(),
               ", expected ", shape);
  return it->second.to(at::kFloat);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<ExpertStack> find_expert_stacks(const std::map<std::string, at::Tensor>& tensors) {
  std::vector<ExpertStack> stacks;
  for (const auto& [name, w_in] : tensors) {
    if (!ends_with(name, ".w_in") || w_in.dim() != 3) continue;
    const std::string prefix = name.substr(0, name.size() - 5);
    const auto out = tensors.find(prefix + ".w_out");
    if (out == tensors.end() || out->second.dim() != 3) continue;
    ExpertStack s;
    s.name = prefix;
    s.w_in = w_in.to(at::kFloat);
    s.w_out = out->second.to(at::kFloat);
    const int64_t e = s.experts(), hidden = s.hidden_dim(), d = s.model_dim();
    STRATA_CHECK(
        e >= 1 && hidden >= 1 && d >= 1 && s.w_out.sizes() == at::IntArrayRef({e, d, hidden}),
        "expert stack '", prefix, "': w_in ", s.w_in.sizes(), " and w_out ", s.w_out.sizes(),
        ", expected [E, hidden, d] and [E, d, hidden]");
    s.b_in = bias_or_zeros(tensors, prefix + ".b_in", {e, hidden});
    s.b_out = bias_or_zeros(tensors, prefix + ".b_out", {e, d});
    stacks.push_back(std::move(s));
  }
  return stacks;
}

std::map<std::string, at::Tensor> read_checkpoint_tensors(const std::string& path, json* extra) {
  // The reader checks the manifest (types, ranges, sizes against tensors.bin) before any
  // tensor below is allocated from it.
  const core::CheckpointReader reader(path);
  TensorTree tree;
  std::map<std::string, at::Tensor> tensors;
  try {
    for (const core::CheckpointReader::Entry& entry : reader.entries()) {
      if (entry.kind == "optimizer") continue;
      const std::string& name = entry.name;
      STRATA_CHECK(!name.empty() && name.front() != '.' && name.back() != '.' &&
                       name.find("..") == std::string::npos,
                   "checkpoint ", path, ": tensor name '", name, "'");
      const at::Tensor t = at::empty(entry.shape, at::TensorOptions().dtype(entry.dtype));
      tree.add(name, t, entry.kind == "parameter");
      tensors.emplace(name, t);
    }
  } catch (const c10::Error& e) {
    STRATA_FAIL("checkpoint ", path, ": tensor names do not form a module tree (",
                e.what_without_backtrace(), ")");
  }
  core::load_checkpoint(path, tree, nullptr, extra);
  return tensors;
}

at::Tensor GaussianCalibration::expert_inputs(const ExpertStack& stack, int64_t expert,
                                              int64_t max_tokens) {
  const uint64_t seed =
      seed_ * 1000003u + std::hash<std::string>{}(stack.name) * 31u + uint64_t(expert);
  return at::randn({max_tokens, stack.model_dim()}, at::make_generator<at::CPUGeneratorImpl>(seed));
}

std::string GaussianCalibration::describe() const {
  return "gaussian tokens (seed " + std::to_string(seed_) + ")";
}

RecordedCalibration::RecordedCalibration(std::map<std::string, at::Tensor> tensors,
                                         std::string origin)
    : tensors_(std::move(tensors)), origin_(std::move(origin)) {}

at::Tensor RecordedCalibration::expert_inputs(const ExpertStack& stack, int64_t expert,
                                              int64_t max_tokens) {
  const auto tokens = tensors_.find(stack.name + ".tokens");
  const auto experts = tensors_.find(stack.name + ".experts");
  STRATA_CHECK(tokens != tensors_.end() && experts != tensors_.end(), origin_, ": no '", stack.name,
               ".tokens' and '", stack.name, ".experts' for layer '", stack.name, "'");
  const at::Tensor& x = tokens->second;
  const at::Tensor& routed = experts->second;
  STRATA_CHECK(x.dim() == 2 && x.size(1) == stack.model_dim() && routed.dim() == 1 &&
                   routed.size(0) == x.size(0) && routed.scalar_type() == at::kLong,
               origin_, ": '", stack.name, ".tokens' ", x.sizes(), " and '", stack.name,
               ".experts' ", routed.sizes(), " ", routed.scalar_type(), ", expected [n, ",
               stack.model_dim(), "] and int64 [n]");
  const at::Tensor rows = (routed == expert).nonzero().flatten();
  return x.index_select(0, rows.narrow(0, 0, std::min(max_tokens, rows.size(0)))).to(at::kFloat);
}

RoutedTokenRecorder::RoutedTokenRecorder(int64_t max_tokens_per_expert)
    : max_tokens_per_expert_(max_tokens_per_expert) {
  STRATA_CHECK(max_tokens_per_expert >= 1, "RoutedTokenRecorder: max tokens per expert ",
               max_tokens_per_expert, ", expected >= 1");
}

void RoutedTokenRecorder::record(const std::string& layer, const at::Tensor& tokens,
                                 const at::Tensor& experts) {
  STRATA_CHECK(tokens.dim() == 2 && experts.dim() == 1 && experts.size(0) == tokens.size(0) &&
                   experts.scalar_type() == at::kLong,
               "RoutedTokenRecorder: tokens ", tokens.sizes(), " and experts ", experts.sizes(),
               " ", experts.scalar_type(), " for layer '", layer,
               "', expected [n, d] and int64 [n]");
  Layer& l = layers_[layer];
  if (!l.tokens.empty())
    STRATA_CHECK(tokens.size(1) == l.tokens.front().size(1), "RoutedTokenRecorder: layer '", layer,
                 "' tokens of width ", tokens.size(1), ", earlier ", l.tokens.front().size(1));
  const at::Tensor ids = experts.contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < ids.size(0); ++i) {
    STRATA_CHECK(id[i] >= 0, "RoutedTokenRecorder: layer '", layer, "' expert id ", id[i]);
    if (static_cast<size_t>(id[i]) >= l.counts.size())
      l.counts.resize(static_cast<size_t>(id[i]) + 1, 0);
    if (l.counts[static_cast<size_t>(id[i])] < max_tokens_per_expert_) {
      ++l.counts[static_cast<size_t>(id[i])];
      keep.push_back(i);
    }
  }
  if (keep.empty()) return;
  const at::Tensor rows = at::tensor(keep, at::kLong);
  l.tokens.push_back(tokens.detach().index_select(0, rows).to(at::kFloat));
  l.experts.push_back(ids.index_select(0, rows));
}

std::map<std::string, at::Tensor> RoutedTokenRecorder::tensors() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, l] : layers_) {
    if (l.tokens.empty()) continue;
    out.emplace(name + ".tokens", at::cat(l.tokens));
    out.emplace(name + ".experts", at::cat(l.experts));
  }
  return out;
}

void RoutedTokenRecorder::save(const std::string& path) const {
  core::CheckpointContents contents;
  for (const auto& [name, tensor] : tensors()) contents.tensors.push_back({name, "buffer", tensor});
  STRATA_CHECK(!contents.tensors.empty(), "RoutedTokenRecorder: nothing recorded to save to ",
               path);
  core::write_checkpoint(path, contents, 0, {{"max_tokens_per_expert", max_tokens_per_expert_}});
}

int64_t RoutedTokenRecorder::tokens(const std::string& layer, int64_t expert) const {
  const auto it = layers_.find(layer);
  if (it == layers_.end() || expert < 0 || static_cast<size_t>(expert) >= it->second.counts.size())
    return 0;
  return it->second.counts[static_cast<size_t>(expert)];
}

json QmoeLayerReport::to_json() const {
  return {{"layer", name},
          {"experts", experts},
          {"d", d},
          {"hidden", hidden},
          {"calibration_tokens", calibration_tokens},
          {"rounded_to_nearest", rounded_to_nearest},
          {"bits_per_weight", bits_per_weight},
          {"zero_fraction", zero_fraction},
          {"dictionary", fitted_dictionary ? "fitted" : "reference"},
          {"relative_output_error", relative_output_error}};
}

QmoeLayer compress_expert_stack(const ExpertStack& stack, CalibrationSource& calibration,
                                const QmoeCompressOptions& options, QmoeLayerReport* report) {
  STRATA_CHECK(options.calibration_tokens() >= 0, "calibration tokens ",
               options.calibration_tokens(), ", expected >= 0");
  torch::NoGradGuard no_grad;
  const int64_t experts = stack.experts(), d = stack.model_dim(), hidden = stack.hidden_dim();
  HessianCollector h_in(experts, d), h_out(experts, hidden);
  std::vector<at::Tensor> inputs;
  for (int64_t e = 0; e < experts; ++e) {
    at::Tensor x = calibration.expert_inputs(stack, e, options.calibration_tokens());
    STRATA_CHECK(x.dim() == 2 && x.size(1) == d && x.size(0) <= options.calibration_tokens(),
                 calibration.describe(), ": inputs of shape ", x.sizes(), " for expert ", e,
                 " of '", stack.name, "', expected [<= ", options.calibration_tokens(), ", ", d,
                 "]");
    x = x.to(at::kFloat);
    h_in.add(e, x);
    h_out.add(e, at::gelu(at::linear(x, stack.w_in[e], stack.b_in[e])));
    inputs.push_back(x);
  }
  const TernaryQuantized q_in = options.round_to_nearest()
                                    ? ternary_round_to_nearest(stack.w_in)
                                    : ternary_gptq(stack.w_in, h_in.hessians(), options.gptq());
  const TernaryQuantized q_out = options.round_to_nearest()
                                     ? ternary_round_to_nearest(stack.w_out)
                                     : ternary_gptq(stack.w_out, h_out.hessians(), options.gptq());
  std::shared_ptr<const TernaryDictionary> fitted;
  if (options.fitted_dictionary()) {
    fitted = make_ternary_dictionary(
        fit_pair_probabilities({q_in.codes.flatten(0, 1), q_out.codes.flatten(0, 1)}),
        "layer '" + stack.name + "': fitted dictionary");
  }
  QmoeLayer layer;
  layer.name = stack.name;
  for (int64_t e = 0; e < experts; ++e) {
    layer.w_in.push_back(ternary_encode(q_in.codes[e], q_in.levels[e], fitted));
    layer.w_out.push_back(ternary_encode(q_out.codes[e], q_out.levels[e], fitted));
  }
  layer.b_in = stack.b_in.to(at::kFloat).contiguous();
  layer.b_out = stack.b_out.to(at::kFloat).contiguous();

  if (report != nullptr) {
    *report = {};
    report->name = stack.name;
    report->experts = experts;
    report->d = d;
    report->hidden = hidden;
    report->bits_per_weight = layer.bits_per_weight();
    report->fitted_dictionary = fitted != nullptr;
    report->zero_fraction = static_cast<double>((q_in.codes == 0).sum().item<int64_t>() +
                                                (q_out.codes == 0).sum().item<int64_t>()) /
                            static_cast<double>(q_in.codes.numel() + q_out.codes.numel());
    if (!options.round_to_nearest()) {
      for (int64_t e = 0; e < experts; ++e)
        report->rounded_to_nearest += q_in.rounded_to_nearest[e] + q_out.rounded_to_nearest[e];
    }
    CompressedExperts compressed = make_compressed_experts(layer);
    double error = 0, norm = 0;
    for (int64_t e = 0; e < experts; ++e) {
      const at::Tensor& x = inputs[e];
      report->calibration_tokens += x.size(0);
      if (x.size(0) == 0) continue;
      const at::Tensor dense = at::linear(at::gelu(at::linear(x, stack.w_in[e], stack.b_in[e])),
                                          stack.w_out[e], stack.b_out[e]);
      error += (compressed->forward(e, x) - dense).pow(2).sum().item<double>();
      norm += dense.pow(2).sum().item<double>();
    }
    report->relative_output_error = norm > 0 ? error / norm : 0;
  }
  return layer;
}

}  // namespace strata::moe
