#include "strata/elastic/mix_n_match.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "strata/core/error.h"

namespace strata::elastic {

namespace {

double cost_of(const ScoredSubmodel& s, SubmodelCost cost) {
  return cost == SubmodelCost::Parameters ? static_cast<double>(s.parameters) : s.flops;
}

const char* cost_name(SubmodelCost cost) {
  return cost == SubmodelCost::Parameters ? "parameters" : "FLOPs";
}

// One submodel per assignment of granularity indices to layers (0 = largest).
ScoredSubmodel from_indices(const core::TransformerLMOptions& model,
                            const std::vector<Granularity>& granularities,
                            const std::vector<size_t>& indices) {
  Submodel s;
  for (const size_t g : indices) {
    s.ffn.push_back(granularities[g].ffn);
    s.heads.push_back(granularities[g].heads);
  }
  return measure_submodel(model, s);
}

void largest_first(std::vector<ScoredSubmodel>& v) {
  std::stable_sort(v.begin(), v.end(), [](const ScoredSubmodel& a, const ScoredSubmodel& b) {
    return a.parameters > b.parameters;
  });
}

// The candidates within the budget, largest first; throws when none is.
std::vector<ScoredSubmodel> within_budget(std::vector<ScoredSubmodel> candidates,
                                          const SubmodelBudget& budget) {
  STRATA_CHECK(!candidates.empty(), "Mix'n'Match: no candidate submodels");
  const auto smallest = std::min_element(candidates.begin(), candidates.end(),
                                         [&](const ScoredSubmodel& a, const ScoredSubmodel& b) {
                                           return cost_of(a, budget.cost) < cost_of(b, budget.cost);
                                         });
  STRATA_CHECK(cost_of(*smallest, budget.cost) <= budget.limit, "budget of ", budget.limit, " ",
               cost_name(budget.cost), " is below the smallest submodel (",
               smallest->submodel.describe(), ": ", cost_of(*smallest, budget.cost), " ",
               cost_name(budget.cost), ")");
  std::vector<ScoredSubmodel> out;
  for (auto& c : candidates)
    if (cost_of(c, budget.cost) <= budget.limit) out.push_back(std::move(c));
  largest_first(out);
  return out;
}

}  // namespace

ScoredSubmodel measure_submodel(const core::TransformerLMOptions& model, const Submodel& submodel) {
  const core::TransformerLMOptions dense = submodel_options(model, submodel);
  ScoredSubmodel out;
  out.submodel = submodel;
  out.parameters = count_parameters(dense);
  out.flops = forward_flops(dense, model.context());
  return out;
}

std::vector<ScoredSubmodel> slowly_changing_submodels(
    const core::TransformerLMOptions& model, const std::vector<Granularity>& granularities) {
  // Index 0 is the largest granularity, so "never shrinking towards the last layer" is a
  // non-increasing index sequence whose steps are 0 or -1.
  std::vector<ScoredSubmodel> out;
  const size_t g = granularities.size(), layers = static_cast<size_t>(model.layers());
  std::vector<size_t> indices(layers);
  std::function<void(size_t)> extend = [&](size_t layer) {
    if (layer == layers) {
      out.push_back(from_indices(model, granularities, indices));
      return;
    }
    if (layer == 0) {
      for (size_t i = 0; i < g; ++i) {
        indices[0] = i;
        extend(1);
      }
      return;
    }
    const size_t previous = indices[layer - 1];
    indices[layer] = previous;
    extend(layer + 1);
    if (previous > 0) {
      indices[layer] = previous - 1;
      extend(layer + 1);
    }
  };
  extend(0);
  largest_first(out);
  return out;
}

std::vector<ScoredSubmodel> mix_n_match_candidates(const core::TransformerLMOptions& model,
                                                   const std::vector<Granularity>& granularities,
                                                   int64_t limit) {
  const double count =
      std::pow(static_cast<double>(granularities.size()), static_cast<double>(model.layers()));
  if (count > static_cast<double>(limit)) return slowly_changing_submodels(model, granularities);
  std::vector<ScoredSubmodel> out;
  std::vector<size_t> indices(static_cast<size_t>(model.layers()), 0);
  while (true) {
    out.push_back(from_indices(model, granularities, indices));
    size_t layer = 0;  // odometer increment
    while (layer < indices.size() && ++indices[layer] == granularities.size()) indices[layer++] = 0;
    if (layer == indices.size()) break;
  }
  largest_first(out);
  return out;
}

ScoredSubmodel mix_n_match_heuristic(const core::TransformerLMOptions& model,
                                     const std::vector<Granularity>& granularities,
                                     const SubmodelBudget& budget) {
  return within_budget(slowly_changing_submodels(model, granularities), budget).front();
}

std::vector<ScoredSubmodel> mix_n_match_search(const core::TransformerLMOptions& model,
                                               const std::vector<Granularity>& granularities,
                                               const SubmodelBudget& budget,
                                               const std::function<double(const Submodel&)>& score,
                                               int top) {
  STRATA_CHECK(top >= 1, "Mix'n'Match search: top ", top, ", expected at least 1");
  std::vector<ScoredSubmodel> candidates =
      within_budget(mix_n_match_candidates(model, granularities), budget);
  if (candidates.size() > static_cast<size_t>(top)) candidates.resize(static_cast<size_t>(top));
  for (ScoredSubmodel& c : candidates) c.loss = score(c.submodel);
  std::stable_sort(
      candidates.begin(), candidates.end(),
      [](const ScoredSubmodel& a, const ScoredSubmodel& b) { return a.loss < b.loss; });
  return candidates;
}

std::vector<ScoredSubmodel> pareto_front(std::vector<ScoredSubmodel> scored) {
  std::stable_sort(
      scored.begin(), scored.end(), [](const ScoredSubmodel& a, const ScoredSubmodel& b) {
        return a.parameters != b.parameters ? a.parameters < b.parameters : a.loss < b.loss;
      });
  // Smallest first: a submodel is on the front when it beats every smaller one's loss.
  std::vector<ScoredSubmodel> front;
  for (ScoredSubmodel& s : scored) {
    if (std::isnan(s.loss)) continue;
    if (front.empty() || s.loss < front.back().loss) front.push_back(std::move(s));
  }
  return front;
}

const ScoredSubmodel* best_within(const std::vector<ScoredSubmodel>& scored,
                                  const SubmodelBudget& budget) {
  const ScoredSubmodel* best = nullptr;
  for (const ScoredSubmodel& s : scored) {
    if (cost_of(s, budget.cost) > budget.limit || std::isnan(s.loss)) continue;
    if (best == nullptr || s.loss < best->loss) best = &s;
  }
  return best;
}

nlohmann::json scored_to_json(const std::vector<ScoredSubmodel>& scored) {
  nlohmann::json out = nlohmann::json::array();
  for (const ScoredSubmodel& s : scored) {
    nlohmann::json j = s.submodel.to_json();
    j["parameters"] = s.parameters;
    j["flops"] = s.flops;
    if (!std::isnan(s.loss)) j["loss"] = s.loss;
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<ScoredSubmodel> scored_from_json(const nlohmann::json& j, const std::string& source) {
  return scored_from_json(core::JsonField(j, source));
}

std::vector<ScoredSubmodel> scored_from_json(const core::JsonField& field) {
  std::vector<ScoredSubmodel> out;
  for (const core::JsonField& item : field.elements()) {
    ScoredSubmodel s;
    s.submodel = Submodel::from_json(item);
    s.parameters = item["parameters"].integer(0);
    s.flops = item["flops"].number(0.0);
    if (item.has("loss")) s.loss = item["loss"].number();
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace strata::elastic
