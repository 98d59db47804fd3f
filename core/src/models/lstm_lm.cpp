#include "strata/core/models/lstm_lm.h"

#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/core/memory.h"
#include "strata/core/models/transformer_lm.h"

namespace strata::core {
namespace nn = torch::nn;

void LSTMLMOptions::validate() const {
  STRATA_CHECK(vocab() >= 1, "LSTM LM vocab ", vocab(), ", expected at least 1");
  STRATA_CHECK(d_model() >= 1, "LSTM LM d_model ", d_model(), ", expected at least 1");
  STRATA_CHECK(layers() >= 1, "LSTM LM layers ", layers(), ", expected at least 1");
  STRATA_CHECK(context() >= 1, "LSTM LM context ", context(), ", expected at least 1");
  STRATA_CHECK(dropout() >= 0 && dropout() < 1, "LSTM LM dropout ", dropout(),
               ", expected a value in [0, 1)");
}

int64_t lstm_lm_training_bytes(const LSTMLMOptions& o, int64_t batch) {
  constexpr int64_t kFloat = 4;
  const int64_t d = o.d_model(), t = o.context();
  // Per layer: input and recurrent weights of 4 gates (8 d^2) and their biases; the table.
  const int64_t params =
      saturating_add(saturating_product({o.layers(), 8, d, d}), saturating_product({o.vocab(), d}));
  // Per layer and token: 4 gates, the cell and hidden states and their tanh (about 8 d);
  // the logits, their softmax and gradient.
  const int64_t activations = saturating_add(saturating_product({o.layers(), batch, t, 8, d}),
                                             saturating_product({3, batch, t, o.vocab()}));
  return saturating_product({kFloat, saturating_add(saturating_product({4, params}), activations)});
}

nlohmann::json lstm_lm_to_json(const LSTMLMOptions& o) {
  return {{"model", "fortunes-lstm"}, {"vocab", o.vocab()},     {"layers", o.layers()},
          {"d_model", o.d_model()},   {"context", o.context()}, {"dropout", o.dropout()}};
}

LSTMStackImpl::LSTMStackImpl(const LSTMLMOptions& o) {
  lstm = register_module("lstm", nn::LSTM(nn::LSTMOptions(o.d_model(), o.d_model())
                                              .num_layers(o.layers())
                                              .dropout(o.layers() > 1 ? o.dropout() : 0.0)
                                              .batch_first(true)));
}

at::Tensor LSTMStackImpl::forward(const at::Tensor& x) { return std::get<0>(lstm->forward(x)); }

torch::nn::Sequential make_lstm_lm(const LSTMLMOptions& options) {
  options.validate();
  nn::Sequential model;
  nn::Embedding embed(options.vocab(), options.d_model());
  model->push_back("embed", embed);
  LSTMStack stack(options);
  model->push_back("lstm", stack);
  model->push_back("norm", nn::LayerNorm(nn::LayerNormOptions({options.d_model()})));
  model->push_back("head", LMHead(embed->weight));

  torch::NoGradGuard no_grad;
  embed->weight.normal_(0.0, 0.02);
  const int64_t d = options.d_model();
  for (const auto& item : stack->named_parameters()) {
    // Gate order i, f, g, o: rows d..2d of each bias are the forget gate's. Both biases
    // (input and recurrent) add up, so each gets half of 1.
    if (item.key().find("bias") != std::string::npos) {
      item.value().zero_();
      item.value().slice(0, d, 2 * d).fill_(0.5);
    }
  }
  return model;
}

}  // namespace strata::core
