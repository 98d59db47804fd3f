#include <strata/sparse/pruning.h>

#include <cmath>

#include "common.h"

namespace strata::sparse {
namespace {

// True at the `keep` largest entries of score (flattened), ties broken by position.
at::Tensor top_mask(const at::Tensor& score, int64_t keep) {
  at::Tensor mask = at::zeros({score.numel()}, at::kBool);
  if (keep > 0) mask.index_fill_(0, std::get<1>(score.flatten().topk(keep)), true);
  return mask.view(score.sizes());
}

int64_t kept(double sparsity, int64_t total) {
  detail::check_sparsity(sparsity);
  return static_cast<int64_t>(std::llround((1.0 - sparsity) * double(total)));
}

}  // namespace

at::Tensor magnitude_mask(const at::Tensor& weight, double sparsity) {
  const at::Tensor w = detail::checked_weight(weight, "magnitude_mask");
  return top_mask(w.abs(), kept(sparsity, w.numel()));
}

at::Tensor block_magnitude_mask(const at::Tensor& weight, double sparsity, BlockShape shape,
                                bool pad) {
  const at::Tensor w = detail::checked_weight(weight, "block_magnitude_mask");
  const auto [out_p, in_p] = detail::block_padding(w, shape, pad);
  const int64_t rows = out_p / shape.out, cols = in_p / shape.in;
  const at::Tensor score =
      detail::pad2d(w, out_p, in_p).abs().view({rows, shape.out, cols, shape.in}).sum({1, 3});
  const at::Tensor blocks = top_mask(score, kept(sparsity, score.numel()));
  return blocks.view({rows, 1, cols, 1})
      .expand({rows, shape.out, cols, shape.in})
      .reshape({out_p, in_p})
      .slice(0, 0, w.size(0))
      .slice(1, 0, w.size(1))
      .contiguous();
}

at::Tensor nm_magnitude_mask(const at::Tensor& weight, int64_t n, int64_t m, bool pad) {
  detail::check_nm(n, m);
  const at::Tensor w = detail::checked_weight(weight, "nm_magnitude_mask");
  const int64_t out = w.size(0);
  const int64_t in_p = detail::padded_size(
      w.size(1), m, pad,
      "N:M " + std::to_string(n) + ":" + std::to_string(m) + ": M does not divide in");
  // Padding scores -1, below any real |w|, so it is picked only when a group runs short.
  const at::Tensor score =
      at::constant_pad_nd(w.abs(), {0, in_p - w.size(1)}, -1.0).view({out, in_p / m, m});
  at::Tensor mask = at::zeros(score.sizes(), at::kBool);
  if (score.numel() > 0) mask.scatter_(2, std::get<1>(score.topk(n, 2)), true);
  return mask.view({out, in_p}).slice(1, 0, w.size(1)).contiguous();
}

}  // namespace strata::sparse
