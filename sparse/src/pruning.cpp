#include "strata/sparse/pruning.h"

#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

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

namespace {

// Mean |w| of every block of the (padded) weight, [block rows, block cols].
at::Tensor block_scores(const at::Tensor& w, BlockShape shape, bool pad) {
  const auto [out_p, in_p] = detail::block_padding(w, shape, pad);
  const int64_t rows = out_p / shape.out, cols = in_p / shape.in;
  return detail::pad2d(w, out_p, in_p).abs().view({rows, shape.out, cols, shape.in}).mean({1, 3});
}

// The element mask of a weight from its block mask [block rows, block cols].
at::Tensor expand_blocks(const at::Tensor& blocks, const at::Tensor& w, BlockShape shape) {
  const int64_t rows = blocks.size(0), cols = blocks.size(1);
  return blocks.view({rows, 1, cols, 1})
      .expand({rows, shape.out, cols, shape.in})
      .reshape({rows * shape.out, cols * shape.in})
      .slice(0, 0, w.size(0))
      .slice(1, 0, w.size(1))
      .contiguous();
}

}  // namespace

at::Tensor block_magnitude_mask(const at::Tensor& weight, double sparsity, BlockShape shape,
                                bool pad) {
  const at::Tensor w = detail::checked_weight(weight, "block_magnitude_mask");
  const at::Tensor score = block_scores(w, shape, pad);
  return expand_blocks(top_mask(score, kept(sparsity, score.numel())), w, shape);
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

PruneStructure PruneStructure::parse(const std::string& text) {
  PruneStructure s;
  long long a = 0, b = 0;
  char sep = 0, extra = 0;
  if (text == "unstructured") return s;
  if (std::sscanf(text.c_str(), "%lld%c%lld%c", &a, &sep, &b, &extra) == 3 && a > 0 && b > 0) {
    if (sep == 'x') {
      s.kind = Kind::Block;
      s.block = BlockShape{a, b};
      return s;
    }
    if (sep == ':') {
      detail::check_nm(a, b);
      s.kind = Kind::NM;
      s.n = a;
      s.m = b;
      return s;
    }
  }
  STRATA_FAIL("pruning structure '", text,
              "': expected unstructured, a block <in>x<out> (e.g. 1x16) or N:M (e.g. 2:8)");
}

std::string PruneStructure::str() const {
  switch (kind) {
    case Kind::Unstructured: return "unstructured";
    case Kind::Block: return block.str();
    case Kind::NM: return std::to_string(n) + ":" + std::to_string(m);
  }
  return "?";
}

at::Tensor structured_mask(const at::Tensor& weight, const PruneStructure& structure,
                           double sparsity) {
  switch (structure.kind) {
    case PruneStructure::Kind::Unstructured: return magnitude_mask(weight, sparsity);
    case PruneStructure::Kind::Block:
      return block_magnitude_mask(weight, sparsity, structure.block);
    case PruneStructure::Kind::NM: return nm_magnitude_mask(weight, structure.n, structure.m);
  }
  STRATA_FAIL("unknown pruning structure");
}

namespace {

// Linear weights of the model by parameter name, in module order.
std::vector<std::pair<std::string, at::Tensor>> linear_weights(
    torch::nn::Module& model, const std::vector<std::string>& skip) {
  std::vector<std::pair<std::string, at::Tensor>> result;
  for (const auto& item : model.named_modules("", /*include_self=*/true)) {
    const auto* linear = item.value()->as<torch::nn::Linear>();
    if (!linear) continue;
    const std::string name = item.key().empty() ? "weight" : item.key() + ".weight";
    if (std::find(skip.begin(), skip.end(), name) == skip.end())
      result.emplace_back(name, linear->weight);
  }
  return result;
}

void check_skip(torch::nn::Module& model, const std::vector<std::string>& skip) {
  const auto all = linear_weights(model, {});
  for (const std::string& name : skip) {
    const bool found =
        std::any_of(all.begin(), all.end(), [&](const auto& item) { return item.first == name; });
    STRATA_CHECK(found, "pruning: skip '", name, "' is not the weight of a Linear of the model");
  }
}

// Global scope: one threshold over the scores of all layers (|w| or mean |w| per block).
std::map<std::string, at::Tensor> global_masks(
    const std::vector<std::pair<std::string, at::Tensor>>& weights, const PruneOptions& o) {
  const PruneStructure& st = o.structure();
  std::vector<at::Tensor> scores;
  for (const auto& [name, weight] : weights) {
    const at::Tensor w = detail::checked_weight(weight, "prune_magnitude");
    scores.push_back(st.kind == PruneStructure::Kind::Block ? block_scores(w, st.block, true)
                                                            : w.abs());
  }
  std::vector<at::Tensor> flat;
  for (const at::Tensor& score : scores) flat.push_back(score.flatten());
  const at::Tensor all = at::cat(flat);
  const at::Tensor keep = top_mask(all, kept(o.sparsity(), all.numel()));
  std::map<std::string, at::Tensor> masks;
  int64_t offset = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor part =
        keep.slice(0, offset, offset + scores[i].numel()).view(scores[i].sizes());
    offset += scores[i].numel();
    masks[weights[i].first] = st.kind == PruneStructure::Kind::Block
                                  ? expand_blocks(part, weights[i].second, st.block)
                                  : part.contiguous();
  }
  return masks;
}

std::map<std::string, at::Tensor> compute_masks(torch::nn::Module& model, const PruneOptions& o,
                                                double sparsity) {
  check_skip(model, o.skip());
  const auto weights = linear_weights(model, o.skip());
  STRATA_CHECK(!weights.empty(), "pruning: the model has no Linear weight to prune");
  if (o.scope() == PruneScope::Global) {
    STRATA_CHECK(o.structure().kind != PruneStructure::Kind::NM, "pruning: N:M ",
                 o.structure().str(), " fixes the ratio of every group; use the per-layer scope");
    return global_masks(weights, PruneOptions(o).sparsity(sparsity));
  }
  std::map<std::string, at::Tensor> masks;
  for (const auto& [name, weight] : weights)
    masks[name] = structured_mask(weight, o.structure(), sparsity);
  return masks;
}

}  // namespace

std::vector<std::string> prunable_weights(torch::nn::Module& model,
                                          const std::vector<std::string>& skip) {
  check_skip(model, skip);
  std::vector<std::string> names;
  for (const auto& item : linear_weights(model, skip)) names.push_back(item.first);
  return names;
}

std::map<std::string, at::Tensor> prune_magnitude(torch::nn::Module& model,
                                                  const PruneOptions& options) {
  auto masks = compute_masks(model, options, options.sparsity());
  apply_masks(model, masks);
  return masks;
}

void apply_masks(torch::nn::Module& model, const std::map<std::string, at::Tensor>& masks) {
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_parameters();
  for (const auto& [name, mask] : masks) {
    const at::Tensor* weight = parameters.find(name);
    STRATA_CHECK(weight, "pruning: the model has no parameter '", name, "'");
    STRATA_CHECK(weight->sizes() == mask.sizes(), "pruning: mask of '", name, "' is ", mask.sizes(),
                 " but the weight is ", weight->sizes());
    weight->mul_(mask.to(weight->scalar_type()));
  }
}

double sparsity_of(torch::nn::Module& model, const std::vector<std::string>& weights) {
  const auto parameters = model.named_parameters();
  int64_t zeros = 0, total = 0;
  for (const std::string& name : weights) {
    const at::Tensor* weight = parameters.find(name);
    STRATA_CHECK(weight, "sparsity_of: the model has no parameter '", name, "'");
    zeros += (*weight == 0).sum().item<int64_t>();
    total += weight->numel();
  }
  return total ? double(zeros) / double(total) : 0.0;
}

GradualPruner::GradualPruner(torch::nn::Module& model, const GradualPruningOptions& options)
    : model_(model), options_(options) {
  detail::check_sparsity(options.initial_sparsity());
  detail::check_sparsity(options.prune().sparsity());
  STRATA_CHECK(options.end_step() > options.start_step() && options.start_step() >= 0,
               "gradual pruning: steps ", options.start_step(), "..", options.end_step(),
               ": expected 0 <= start < end");
  STRATA_CHECK(options.every() >= 1, "gradual pruning: every ", options.every(),
               ": expected at least 1");
  check_skip(model, options.prune().skip());
}

double GradualPruner::sparsity_at(int64_t step) const {
  const double s0 = options_.initial_sparsity(), s1 = options_.prune().sparsity();
  if (step < options_.start_step()) return 0.0;
  if (step >= options_.end_step()) return s1;
  const double progress =
      double(step - options_.start_step()) / double(options_.end_step() - options_.start_step());
  return s1 + (s0 - s1) * std::pow(1.0 - progress, 3);
}

bool GradualPruner::step(int64_t step) {
  const int64_t start = options_.start_step(), end = options_.end_step();
  const bool nm = options_.prune().structure().kind == PruneStructure::Kind::NM;
  // Updates on start, every `every` steps after it, and on the last scheduled step.
  const bool due = step >= start && step <= end &&
                   ((step - start) % options_.every() == 0 || step == end) &&
                   !(nm && !masks_.empty());
  if (due) masks_ = compute_masks(model_, options_.prune(), sparsity_at(step));
  if (!masks_.empty()) apply_masks(model_, masks_);
  return due;
}

torch::nn::Sequential to_sparse_linear(const torch::nn::Sequential& model,
                                       const std::map<std::string, at::Tensor>& masks,
                                       const SparseLinearOptions& options) {
  size_t used = 0;
  auto result = detail::replace_linears(
      model,
      [&](const std::string& name,
          const torch::nn::Linear& linear) -> std::optional<torch::nn::AnyModule> {
        const auto mask = masks.find(name + ".weight");
        if (mask == masks.end()) return std::nullopt;
        ++used;
        return torch::nn::AnyModule(SparseLinear(linear, options, mask->second));
      });
  STRATA_CHECK(used == masks.size(), "to_sparse_linear: ", masks.size() - used,
               " mask(s) name no Linear child of the Sequential");
  return result;
}

}  // namespace strata::sparse
