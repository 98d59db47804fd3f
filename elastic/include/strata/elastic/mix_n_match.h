#pragma once
// Mix'n'Match (MatFormer): a submodel takes a granularity per layer, so a universal model
// with G granularities and L layers holds G^L submodels that were never trained one by
// one. Two ways to pick one for a budget (parameters or FLOPs):
//
//   - mix_n_match_heuristic: the paper's rule of thumb, widths that change slowly across
//     layers. We read it as: granularities that never shrink from the first layer to the
//     last and step by at most one granularity between neighbours. Among those within the
//     budget, the largest. Costs nothing to run.
//   - mix_n_match_search: scores the largest candidates within the budget (any
//     assignment, or the slowly changing ones when there are too many) with a function the
//     caller gives, typically the loss on a few validation batches, and keeps the best.
//
//   auto pick = strata::elastic::mix_n_match_heuristic(options, granularities,
//                                                      {SubmodelCost::Parameters, 2e6});

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "strata/elastic/matformer.h"

namespace strata::elastic {

struct ScoredSubmodel {
  Submodel submodel;
  int64_t parameters = 0;
  double flops = 0;  // one forward pass over a sequence of the model's context
  double loss = std::numeric_limits<double>::quiet_NaN();  // NaN until scored
};

enum class SubmodelCost { Parameters, Flops };
struct SubmodelBudget {
  SubmodelCost cost = SubmodelCost::Parameters;
  double limit = 0;
};

// `submodel` with its parameter count and FLOPs (not scored).
ScoredSubmodel measure_submodel(const core::TransformerLMOptions& model, const Submodel& submodel);

// Every submodel with one granularity per layer, largest first: all G^L of them when
// there are at most `limit`, else only the slowly changing ones.
std::vector<ScoredSubmodel> mix_n_match_candidates(const core::TransformerLMOptions& model,
                                                   const std::vector<Granularity>& granularities,
                                                   int64_t limit = 4096);
// The slowly changing submodels (see above), largest first.
std::vector<ScoredSubmodel> slowly_changing_submodels(
    const core::TransformerLMOptions& model, const std::vector<Granularity>& granularities);

// The heuristic's pick. Throws strata::Error when even the smallest submodel exceeds the
// budget, naming both.
ScoredSubmodel mix_n_match_heuristic(const core::TransformerLMOptions& model,
                                     const std::vector<Granularity>& granularities,
                                     const SubmodelBudget& budget);

// Scores the `top` candidates with the most parameters within the budget (`score`: lower
// is better, e.g. a validation loss) and returns them, best first. Throws like the
// heuristic when nothing fits.
std::vector<ScoredSubmodel> mix_n_match_search(const core::TransformerLMOptions& model,
                                               const std::vector<Granularity>& granularities,
                                               const SubmodelBudget& budget,
                                               const std::function<double(const Submodel&)>& score,
                                               int top = 16);

// The scored submodels no other one beats on both parameters and loss, smallest first.
std::vector<ScoredSubmodel> pareto_front(std::vector<ScoredSubmodel> scored);

// The best scored submodel within the budget (lowest loss), or nullptr when none fits.
const ScoredSubmodel* best_within(const std::vector<ScoredSubmodel>& scored,
                                  const SubmodelBudget& budget);

nlohmann::json scored_to_json(const std::vector<ScoredSubmodel>& scored);
// Throws strata::Error naming `source` and the field at fault.
std::vector<ScoredSubmodel> scored_from_json(const nlohmann::json& j,
                                             const std::string& source = "Mix'n'Match front");
std::vector<ScoredSubmodel> scored_from_json(const core::JsonField& field);

}  // namespace strata::elastic
