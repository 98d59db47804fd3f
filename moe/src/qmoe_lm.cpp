#include "strata/moe/qmoe_lm.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <map>

#include "strata/core/error.h"

namespace strata::moe {

namespace {

// Removes the observers and restores the mode on every way out of record_routed_tokens.
struct RecordingGuard {
  torch::nn::Sequential& model;
  std::vector<MoELayerImpl*> layers;
  bool was_training;
  ~RecordingGuard() {
    for (MoELayerImpl* layer : layers) layer->set_token_observer(nullptr);
    model->train(was_training);
  }
};

}  // namespace

void record_routed_tokens(torch::nn::Sequential& model, const core::TextCorpus& corpus,
                          int64_t sequences, int64_t context, uint64_t seed,
                          RoutedTokenRecorder& recorder) {
  STRATA_CHECK(sequences >= 1, "calibration sequences ", sequences, ", expected at least 1");
  const auto layers = named_moe_layers(*model);
  STRATA_CHECK(!layers.empty(), "calibration: the model has no MoE layers");
  RecordingGuard guard{model, {}, model->is_training()};
  for (const auto& [name, layer] : layers) {
    guard.layers.push_back(layer);
    layer->set_token_observer([&recorder, name = name](int64_t expert, const at::Tensor& rows) {
      recorder.record(name, rows, at::full({rows.size(0)}, expert, at::kLong));
    });
  }
  model->eval();
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  constexpr int64_t kBatch = 16;
  for (int64_t done = 0; done < sequences; done += kBatch) {
    const at::Tensor inputs =
        corpus.sample_batch(true, std::min(kBatch, sequences - done), context, gen).first;
    model->forward(inputs);
  }
}

void use_compressed_experts(torch::nn::Module& model, const QmoeModel& compressed,
                            const std::string& what, const CompressedLinearOptions& options) {
  std::map<std::string, const QmoeLayer*> by_name;
  for (const QmoeLayer& layer : compressed.layers) by_name.emplace(layer.name, &layer);
  const auto layers = named_moe_layers(model);
  std::string names;
  for (const auto& [name, layer] : layers) names += (names.empty() ? "" : ", ") + name;
  STRATA_CHECK(by_name.size() == layers.size(), what, ": ", compressed.layers.size(),
               " compressed layers, the model has ", layers.size(), " MoE layers (", names, ")");
  // Everything is checked before the first layer changes.
  for (const auto& [name, layer] : layers) {
    const auto it = by_name.find(name);
    STRATA_CHECK(it != by_name.end(), what, ": no compressed layer '", name,
                 "' (the model's MoE layers: ", names, ")");
    const QmoeLayer& q = *it->second;
    const MoELayerOptions& o = layer->options;
    STRATA_CHECK(
        q.experts() == o.experts() && q.model_dim() == o.d_model() && q.hidden_dim() == o.hidden(),
        what, ": layer '", name, "' has ", q.experts(), " experts of d ", q.model_dim(),
        ", hidden ", q.hidden_dim(), "; the model's has ", o.experts(), " of d ", o.d_model(),
        ", hidden ", o.hidden());
  }
  for (const auto& [name, layer] : layers)
    layer->set_compressed_experts(make_compressed_experts(*by_name.at(name), options));
}

LoadedMoETransformerLM load_compressed_moe_lm(const std::string& checkpoint,
                                              const std::string& qmoe_file,
                                              const CompressedLinearOptions& options) {
  const QmoeModel compressed = read_qmoe(qmoe_file);
  LoadedMoETransformerLM loaded = load_moe_transformer_lm(checkpoint);
  use_compressed_experts(*loaded.model, compressed, qmoe_file, options);
  loaded.model->eval();
  return loaded;
}

}  // namespace strata::moe
