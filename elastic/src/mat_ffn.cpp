#include "strata/elastic/mat_ffn.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>

#include "strata/core/error.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/elastic/matformer.h"

namespace strata::elastic {

std::vector<int64_t> default_granularities(int64_t hidden) {
  std::vector<int64_t> out;
  for (int64_t divisor : {1, 2, 4, 8}) {
    const int64_t width = hidden / divisor;
    if (width >= 1 && (out.empty() || out.back() != width)) out.push_back(width);
  }
  return out;
}

MatFfnImpl::MatFfnImpl(const MatFfnOptions& options_) : options(options_) {
  STRATA_CHECK(options.d_model() >= 1 && options.hidden() >= 1, "MatFfn: d_model ",
               options.d_model(), " and hidden ", options.hidden(), ", expected at least 1");
  granularities_ = options.granularities().empty()
                       ? default_granularities(options.hidden())
                       : checked_granularities(options.granularities(), options.hidden(), "MatFfn");
  width_ = granularities_.front();
  ffn_in = register_module("ffn_in", torch::nn::Linear(options.d_model(), options.hidden()));
  ffn_out = register_module("ffn_out", torch::nn::Linear(options.hidden(), options.d_model()));
}

void MatFfnImpl::check_granularity(int64_t width) const {
  STRATA_CHECK(
      std::find(granularities_.begin(), granularities_.end(), width) != granularities_.end(),
      "MatFfn: width ", width, " is not one of its granularities (", join_widths(granularities_),
      ")");
}

void MatFfnImpl::set_width(int64_t width) {
  check_granularity(width);
  width_ = width;
}

at::Tensor MatFfnImpl::forward(const at::Tensor& x, int64_t width) {
  if (width == kActiveWidth) width = width_;
  check_granularity(width);
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == options.d_model(), "MatFfn input: shape ", x.sizes(),
               ", expected [..., ", options.d_model(), "]");
  return core::feed_forward(x, ffn_in, ffn_out, width);
}

}  // namespace strata::elastic
