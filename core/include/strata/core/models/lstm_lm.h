#pragma once
// fortunes-lstm: the recurrent baseline beside fortunes-lm (Languini's "fast LSTM", issue
// 21), a byte-level multi-layer LSTM language model with the same tokenizer, loss and
// evaluation, as a flat Sequential that HybridParallel trains data-parallel:
//
//   embed  Embedding     int64 tokens [B, T] -> float [B, T, d]
//   lstm   LSTMStack     [B, T, d] -> [B, T, d]  (torch::nn::LSTM, `layers` deep, batch first)
//   norm   LayerNorm     [B, T, d] -> [B, T, d]
//   head   LMHead        [B, T, d] -> logits [B, T, vocab], tied to the embedding's table
//
// Every sequence starts from a zero state: windows are sampled independently, so there is
// no state to carry between batches (nor between a pipeline's stages: the recurrence is one
// element, and train_lm refuses --pp with --arch lstm).

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <cstdint>

namespace strata::core {

struct LSTMLMOptions {
  // Throws strata::Error naming the first bad option.
  void validate() const;

  TORCH_ARG(int64_t, vocab) = 256;
  TORCH_ARG(int64_t, d_model) = 256;  // embedding and hidden state width
  TORCH_ARG(int64_t, layers) = 2;
  TORCH_ARG(int64_t, context) = 128;  // recorded for the checkpoint; the LSTM has no limit
  TORCH_ARG(double, dropout) = 0.0;   // between LSTM layers (torch::nn::LSTM's dropout)
};

// Bytes one training step of `batch` sequences needs, about (parameters with gradients and
// two Adam moments; per layer and token the gates, cell and hidden states autograd keeps;
// the logits): an estimate for core::check_fits, saturating at INT64_MAX.
int64_t lstm_lm_training_bytes(const LSTMLMOptions& options, int64_t batch);

// {"model": "fortunes-lstm", ...}: a checkpoint's extra records it.
nlohmann::json lstm_lm_to_json(const LSTMLMOptions& options);

// torch::nn::LSTM as a Sequential element: one tensor in, the last layer's outputs out.
class LSTMStackImpl : public torch::nn::Module {
 public:
  explicit LSTMStackImpl(const LSTMLMOptions& options);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::LSTM lstm{nullptr};
};
TORCH_MODULE(LSTMStack);

// The model above: embedding normal(0, 0.02), LSTM weights uniform(+-1/sqrt(d)) as
// torch::nn::LSTM makes them, with the forget gates' biases at 1 (a common start that
// lets gradients through long windows early on); deterministic under torch::manual_seed.
torch::nn::Sequential make_lstm_lm(const LSTMLMOptions& options = {});

}  // namespace strata::core
