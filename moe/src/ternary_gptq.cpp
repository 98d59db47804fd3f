#include "strata/moe/ternary_gptq.h"

#include <torch/torch.h>

#include "strata/core/error.h"

namespace strata::moe {

namespace {

void check_weight(const at::Tensor& w, const char* what) {
  STRATA_CHECK(w.defined() && w.dim() == 3 && w.size(1) >= 1 && w.size(2) >= 1, what,
               ": weight of shape ", w.defined() ? w.sizes() : at::IntArrayRef{},
               ", expected [experts, rows, cols]");
  STRATA_CHECK(at::isfinite(w).all().item<bool>(), what, ": the weight holds inf or nan");
}

// Codes and values of one column w [E, rows] with levels low, high [E, rows].
std::pair<at::Tensor, at::Tensor> quantize_column(const at::Tensor& w, const at::Tensor& low,
                                                  const at::Tensor& high) {
  // The reference's rule; a level of 0 gives code 0 (same value, cheaper to encode).
  const at::Tensor is_high = (w > high / 2) & (high != 0);
  const at::Tensor is_low = (w < low / 2) & (low != 0);
  const at::Tensor codes = is_low.to(at::kByte) + 2 * is_high.to(at::kByte);
  const at::Tensor values =
      at::where(is_high, high, at::where(is_low, low, at::zeros({}, w.options())));
  return {codes, values};
}

}  // namespace

at::Tensor TernaryQuantized::dequantized() const {
  const at::Tensor table = at::cat({at::zeros_like(levels.narrow(2, 0, 1)), levels}, 2);
  return table.gather(2, codes.to(at::kLong));
}

at::Tensor ternary_levels(const at::Tensor& w) {
  const at::Tensor zero = at::zeros({}, w.options());
  at::Tensor low = at::minimum(std::get<0>(w.min(2)), zero);
  at::Tensor high = at::maximum(std::get<0>(w.max(2)), zero);
  const at::Tensor dead = (low == 0) & (high == 0);
  low = at::where(dead, at::full({}, -1.f, w.options()), low);
  high = at::where(dead, at::full({}, 1.f, w.options()), high);
  // The compressed format stores the levels in bfloat16: quantize to those values, so that
  // GPTQ compensates the rounding and decoding gives back exactly what it chose.
  return at::stack({low, high}, 2).to(at::kBFloat16).to(at::kFloat);
}

TernaryQuantized ternary_round_to_nearest(const at::Tensor& w_in) {
  check_weight(w_in, "ternary_round_to_nearest");
  const at::Tensor w = w_in.detach().to(at::kFloat);
  TernaryQuantized out;
  out.levels = ternary_levels(w);
  out.codes =
      quantize_column(w, out.levels.select(2, 0).unsqueeze(2), out.levels.select(2, 1).unsqueeze(2))
          .first;
  out.rounded_to_nearest.assign(static_cast<size_t>(w.size(0)), true);
  return out;
}

TernaryQuantized ternary_gptq(const at::Tensor& w_in, const at::Tensor& hessian,
                              const TernaryGptqOptions& options) {
  check_weight(w_in, "ternary_gptq");
  const int64_t experts = w_in.size(0), rows = w_in.size(1), cols = w_in.size(2);
  STRATA_CHECK(hessian.defined() && hessian.sizes() == at::IntArrayRef({experts, cols, cols}),
               "ternary_gptq: Hessian of shape ",
               hessian.defined() ? hessian.sizes() : at::IntArrayRef{}, ", expected [", experts,
               ", ", cols, ", ", cols, "]");
  STRATA_CHECK(options.damp() >= 0, "ternary_gptq: damp ", options.damp(), ", expected >= 0");
  STRATA_CHECK(options.block_size() >= 1, "ternary_gptq: block_size ", options.block_size(),
               ", expected >= 1");
  at::Tensor w = w_in.detach().to(at::kFloat).clone();

  TernaryQuantized out;
  out.levels = ternary_levels(w);  // from the weight before any update, as the reference
  out.codes = at::empty({experts, rows, cols}, at::kByte);
  out.rounded_to_nearest.assign(static_cast<size_t>(experts), false);
  const at::Tensor low = out.levels.select(2, 0), high = out.levels.select(2, 1);

  // The upper Cholesky factor of H^-1 per expert: its row i holds how the error of column i
  // spreads over the later columns. An expert whose dampened H is not positive definite
  // (or whose inverse's factorization fails) gets the identity: round to nearest.
  const at::Tensor eye = at::eye(cols, at::kFloat);
  at::Tensor hinv = at::empty({experts, cols, cols}, at::kFloat);
  for (int64_t e = 0; e < experts; ++e) {
    at::Tensor h = hessian[e].detach().to(at::kFloat).clone();
    const double mean_diag = h.diagonal().mean().item<double>();
    h.diagonal().add_(std::max(options.damp() * mean_diag, 1e-6));
    bool ok = at::isfinite(h).all().item<bool>();
    if (ok) {
      auto [factor, info] = at::linalg_cholesky_ex(h);
      ok = info.item<int>() == 0;
      if (ok) {
        auto [upper, info2] = at::linalg_cholesky_ex(at::cholesky_inverse(factor), /*upper=*/true);
        ok = info2.item<int>() == 0 && at::isfinite(upper).all().item<bool>();
        if (ok) hinv[e] = upper;
      }
    }
    if (!ok) {
      hinv[e] = eye;
      out.rounded_to_nearest[static_cast<size_t>(e)] = true;
    }
  }

  for (int64_t i1 = 0; i1 < cols; i1 += options.block_size()) {
    const int64_t i2 = std::min(i1 + options.block_size(), cols), count = i2 - i1;
    at::Tensor block = w.narrow(2, i1, count).clone();
    at::Tensor errors = at::zeros({experts, rows, count});
    const at::Tensor hinv_block = hinv.narrow(1, i1, count).narrow(2, i1, count);
    for (int64_t i = 0; i < count; ++i) {
      const at::Tensor column = block.select(2, i);
      const at::Tensor d = hinv_block.select(1, i).select(1, i).unsqueeze(1);  // [E, 1]
      auto [codes, values] = quantize_column(column, low, high);
      out.codes.select(2, i1 + i).copy_(codes);
      const at::Tensor error = (column - values) / d;  // [E, rows]
      block.narrow(2, i, count - i)
          .sub_(at::bmm(error.unsqueeze(2),
                        hinv_block.select(1, i).narrow(1, i, count - i).unsqueeze(1)));
      errors.select(2, i).copy_(error);
    }
    if (i2 < cols)
      w.narrow(2, i2, cols - i2)
          .sub_(at::bmm(errors, hinv.narrow(1, i1, count).narrow(2, i2, cols - i2)));
  }
  return out;
}

HessianCollector::HessianCollector(int64_t experts, int64_t features)
    : features_(features), counts_(static_cast<size_t>(experts), 0) {
  STRATA_CHECK(experts >= 1 && features >= 1, "HessianCollector: ", experts, " experts of ",
               features, " features, expected both >= 1");
  sums_ = at::zeros({experts, features, features}, at::kDouble);
}

void HessianCollector::add(int64_t expert, const at::Tensor& tokens) {
  STRATA_CHECK(expert >= 0 && expert < experts(), "HessianCollector: expert ", expert,
               ", expected 0 to ", experts() - 1);
  STRATA_CHECK(tokens.dim() == 2 && tokens.size(1) == features_,
               "HessianCollector: tokens of shape ", tokens.sizes(), ", expected [n, ", features_,
               "]");
  if (tokens.size(0) == 0) return;
  const at::Tensor x = tokens.detach().to(at::kDouble);
  sums_[expert].addmm_(x.t(), x);
  counts_[static_cast<size_t>(expert)] += tokens.size(0);
}

at::Tensor HessianCollector::hessians() const {
  at::Tensor out = at::zeros_like(sums_, at::kFloat);
  for (int64_t e = 0; e < experts(); ++e) {
    const int64_t n = counts_[static_cast<size_t>(e)];
    if (n > 0) out[e] = (sums_[e] * (2.0 / double(n))).to(at::kFloat);
  }
  return out;
}

}  // namespace strata::moe
