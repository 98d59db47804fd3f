#pragma once
// MatFormer's nested feed-forward layer (REFERENCE.md, "Nested elastic submodels"): one
// FFN of hidden width h that also holds the smaller FFNs made of its first m hidden
// neurons, for each granularity m (by default h, h/2, h/4, h/8). Trained jointly (the sum
// of the granularities' losses), every one of them is a good FFN on its own, and a
// submodel keeps only the first m rows of ffn_in and columns of ffn_out.
//
//   strata::elastic::MatFfn ffn(strata::elastic::MatFfnOptions(256, 1024));
//   at::Tensor y = ffn(x);              // full width (the active one)
//   at::Tensor small = ffn->forward(x, 256);   // the first 256 neurons, this call only
//   ffn->set_width(128);                // every later call
//
// The weights are never copied: a width is a view of the first rows and columns.
// fortunes-lm's DecoderBlock (core/models/transformer_lm.h) nests the same way, through the same
// core::feed_forward, so that a checkpoint cut from it is an ordinary fortunes-lm.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace strata::elastic {

// h, h/2, h/4, h/8 (those of them that are at least 1, without repeats), largest first.
std::vector<int64_t> default_granularities(int64_t hidden);

struct MatFfnOptions {
  MatFfnOptions(int64_t d_model, int64_t hidden) : d_model_(d_model), hidden_(hidden) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, hidden);
  // The widths the layer may run at, each in 1..hidden; empty: default_granularities.
  TORCH_ARG(std::vector<int64_t>, granularities) = {};
};

class MatFfnImpl : public torch::nn::Module {
 public:
  explicit MatFfnImpl(const MatFfnOptions& options);

  // ffn_out(gelu(ffn_in(x))) at the active width, or at `width` (one of granularities())
  // for this call only.
  at::Tensor forward(const at::Tensor& x, int64_t width = kActiveWidth);
  static constexpr int64_t kActiveWidth = 0;

  // Throws strata::Error naming the granularities when `width` is not one of them.
  void set_width(int64_t width);
  int64_t width() const { return width_; }
  // Largest first.
  const std::vector<int64_t>& granularities() const { return granularities_; }

  MatFfnOptions options;
  torch::nn::Linear ffn_in{nullptr};   // d_model -> hidden
  torch::nn::Linear ffn_out{nullptr};  // hidden -> d_model

 private:
  void check_granularity(int64_t width) const;

  std::vector<int64_t> granularities_;
  int64_t width_;
};
TORCH_MODULE(MatFfn);

}  // namespace strata::elastic
