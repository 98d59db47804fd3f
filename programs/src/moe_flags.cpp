#include "strata/programs/moe_flags.h"

#include "strata/core/error.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

namespace strata::programs {
namespace {
const char* const kMoEOnlyFlags[] = {"--experts",         "--top-k",         "--expert-ffn",
                                     "--capacity-factor", "--drop-priority", "--balance-loss",
                                     "--z-loss",          "--router-jitter", "--ep"};
}  // namespace

void add_moe_flags(CLI::App& app, MoEFlags& f) {
  moe::MoELayerOptions& layer = f.layer;
  app.add_flag("--moe", f.enabled,
               "fortunes-lm-moe: every FFN becomes a mixture of experts (see --experts)");
  integer_range(app.add_option("--experts", layer.experts(), "Experts per MoE layer"), 1,
                kMaxLayers);
  integer_range(app.add_option("--top-k", layer.top_k(), "Experts per token"), 1, kMaxLayers);
  integer_range(app.add_option("--expert-ffn", layer.hidden(), "Hidden width of each expert"), 1,
                kMaxWidth);
  real_range(
      app.add_option("--capacity-factor", layer.capacity_factor(),
                     "Expert capacity = ceil(top-k * tokens / experts * factor); 0: dropless"),
      0, kMaxCapacityFactor);
  add_enum_option(app, "--drop-priority", layer.drop_priority(),
                  {{"order", moe::DropPriority::Order}, {"score", moe::DropPriority::Score}},
                  "Which tokens a full expert keeps");
  real_range(app.add_option("--balance-loss", layer.balance_loss_coef(),
                            "Coefficient of the load-balancing loss"),
             0, kMaxLossCoefficient);
  real_range(app.add_option("--z-loss", layer.z_loss_coef(), "Coefficient of the router z-loss"), 0,
             kMaxLossCoefficient);
  real_range(app.add_option("--router-jitter", layer.jitter(),
                            "Multiplicative router input noise in training"),
             0, 0.99);
  integer_range(app.add_option("--ep", f.ep,
                               "Expert-parallel size: ranks that share out each layer's experts "
                               "(divides the data-parallel size)"),
                1, kMaxRanks);
}

void check_moe_flags(const CLI::App& app, const MoEFlags& f) {
  if (!f.enabled) {
    for (const char* flag : kMoEOnlyFlags) STRATA_CHECK(app.count(flag) == 0, flag, " needs --moe");
    return;
  }
  const int64_t experts = f.layer.experts(), top_k = f.layer.top_k();
  STRATA_CHECK(top_k <= experts, "--top-k ", top_k, " is above --experts ", experts);
  STRATA_CHECK(experts % f.ep == 0, "--experts ", experts, " is not divisible by --ep ", f.ep);
}

}  // namespace strata::programs
