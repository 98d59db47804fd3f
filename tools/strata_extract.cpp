// strata-extract: cuts a submodel out of a MatFormer checkpoint (examples/train_lm
// --matformer) and writes it as an ordinary, smaller fortunes-lm checkpoint.
//
//   strata-extract --checkpoint ckpt/step-00002000 --list
//   strata-extract --checkpoint ckpt/step-00002000 --granularity 256 --out lm-256
//   strata-extract --checkpoint ckpt/step-00002000 --budget-params 2000000 --out lm-2m
//   strata-extract --checkpoint ckpt/step-00002000 --config submodel.json --out lm-custom
//
// --granularity m: every layer at FFN width m (with that granularity's heads).
// --budget-params P: the Mix'n'Match submodel with the lowest validation loss among those
//   scored at the end of training within P parameters; without scores, the heuristic's
//   (slowly changing widths, the largest within P).
// --budget-params P --search N: scores the 16 largest submodels within P (any width per
//   layer) on N validation batches of --data-dir instead, and takes the best.
// --config FILE: {"ffn": [per layer], "heads": [per layer], "skip": [layers to leave out]}.
// --skip 1,3 leaves layers out of a --granularity or --budget-params submodel.
// The output loads with strata::core::load_transformer_lm; it is written one tensor at a
// time, and nothing is written on any error.
#include <malloc.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <torch/torch.h>

#include "strata/core/data/text_corpus.h"
#include "strata/core/error.h"
#include "strata/core/json_fields.h"
#include "strata/core/models/lm_validation.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/output_files.h"
#include "strata/elastic/extract.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/output_flags.h"

namespace {

namespace core = strata::core;
namespace elastic = strata::elastic;

struct Flags {
  std::string checkpoint;
  std::string out;
  bool list = false;
  bool overwrite = false;
  int64_t granularity = 0;
  double budget_params = 0;
  std::string config;
  std::vector<int64_t> skip;
  int64_t search = 0;
  std::string data_dir = core::kFortunesDir;
};

// Mix'n'Match by measurement: the mean loss of each candidate over --search validation
// batches (32 windows of the context each: train_lm's validation windows).
elastic::ScoredSubmodel search(const Flags& f, const elastic::MatFormerCheckpoint& info,
                               const elastic::SubmodelBudget& budget) {
  const core::TextCorpus corpus = core::TextCorpus::load(f.data_dir);
  core::LoadedTransformerLM lm = core::load_transformer_lm(f.checkpoint);
  lm.model->eval();
  const auto ranked = elastic::mix_n_match_search(
      info.model, info.granularities, budget, [&](const elastic::Submodel& s) {
        torch::NoGradGuard no_grad;
        elastic::apply_submodel(*lm.model, s);
        return core::validation_loss(corpus, f.search, 32, info.model.context(),
                                     [&](const at::Tensor& x) { return lm.model->forward(x); });
      });
  for (const auto& r : ranked)
    std::cout << fmt::format("  scored {:>11} parameters  loss {:.4f}  {}\n", r.parameters, r.loss,
                             r.submodel.describe());
  return ranked.front();
}

void print_list(const elastic::MatFormerCheckpoint& info) {
  std::cout << "granularities (FFN width, heads, parameters, GFLOPs per " << info.model.context()
            << "-token forward):\n";
  for (const elastic::Granularity& g : info.granularities) {
    const auto m = elastic::measure_submodel(info.model, elastic::Submodel::uniform(info.model, g));
    std::cout << fmt::format("  {:>6} {:>4} {:>11} {:>9.4f}\n", g.ffn, g.heads, m.parameters,
                             m.flops / 1e9);
  }
  const auto front = elastic::pareto_front(info.scored);
  if (front.empty()) {
    std::cout << "Mix'n'Match: no scored submodels in this checkpoint; the slowly changing ones:\n";
    for (const auto& s : elastic::slowly_changing_submodels(info.model, info.granularities))
      std::cout << fmt::format("  {:>11} parameters  {}\n", s.parameters, s.submodel.describe());
    return;
  }
  std::cout << "Mix'n'Match front (" << info.scored.size()
            << " submodels scored after training; validation loss):\n";
  for (const auto& s : front)
    std::cout << fmt::format("  {:>11} parameters  loss {:.4f}  {}\n", s.parameters, s.loss,
                             s.submodel.describe());
}

elastic::Submodel read_config(const std::string& path) {
  return elastic::Submodel::from_json(core::read_json_file(path, "--config"), "--config " + path);
}

elastic::Submodel choose(const Flags& f, const elastic::MatFormerCheckpoint& info) {
  if (!f.config.empty()) return read_config(f.config);
  elastic::Submodel s;
  if (f.granularity > 0) {
    const auto it = std::find_if(info.granularities.begin(), info.granularities.end(),
                                 [&](const auto& g) { return g.ffn == f.granularity; });
    std::vector<int64_t> widths;
    for (const auto& g : info.granularities) widths.push_back(g.ffn);
    STRATA_CHECK(it != info.granularities.end(), "--granularity ", f.granularity,
                 " is not in the model (", elastic::join_widths(widths), ")");
    s = elastic::Submodel::uniform(info.model, *it);
  } else {
    const elastic::SubmodelBudget budget{elastic::SubmodelCost::Parameters, f.budget_params};
    const elastic::ScoredSubmodel* best = elastic::best_within(info.scored, budget);
    if (f.search > 0) {
      s = search(f, info, budget).submodel;
    } else if (best != nullptr) {
      s = best->submodel;
    } else {
      s = elastic::mix_n_match_heuristic(info.model, info.granularities, budget).submodel;
    }
  }
  s.skip = f.skip;
  return s;
}

int run(const Flags& f) {
  core::CheckpointReader reader(f.checkpoint);
  const elastic::MatFormerCheckpoint info = elastic::read_matformer_checkpoint(reader);
  if (f.list) {
    print_list(info);
    return 0;
  }
  const elastic::Submodel submodel = choose(f, info);
  const elastic::ExtractReport r = elastic::extract_submodel(f.checkpoint, submodel, f.out);
  const auto full = elastic::measure_submodel(
      info.model, elastic::Submodel::uniform(info.model, info.granularities.front()));
  std::cout << fmt::format(
      "wrote {}: {}\n  {} parameters ({:.1f}% of {}), {:.4f} GFLOPs per {}-token forward "
      "({:.1f}%), {:.1f} MB in {:.2f} s\n",
      f.out, submodel.describe(), r.parameters, 100.0 * r.parameters / full.parameters,
      full.parameters, r.flops / 1e9, info.model.context(), 100.0 * r.flops / full.flops,
      r.bytes_written / 1e6, r.seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // glibc serves a block above the mmap threshold with its own mapping and unmaps it when
  // freed, but raises the threshold to the size of each such block freed; after the first
  // weight the next ones come from the heap, where freed blocks of uneven sizes fragment
  // and stay resident (a 100M-parameter extraction peaked at 2.6x its output instead of
  // one tensor). A fixed threshold keeps every tensor in its own mapping.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  return strata::programs::run_main([&] {
    Flags f;
    CLI::App app{"Cut a submodel out of a MatFormer fortunes-lm checkpoint."};
    strata::programs::configure_cli(app);
    app.add_option("--checkpoint", f.checkpoint, "MatFormer checkpoint (a step-N directory)")
        ->required();
    auto* out =
        app.add_option("--out", f.out, "Output checkpoint directory (its parent must exist)");
    strata::programs::add_overwrite_flag(app, f.overwrite);
    auto* list =
        app.add_flag("--list", f.list, "Print the granularities and the Mix'n'Match front");
    using namespace strata::programs;  // NOLINT(google-build-using-namespace): flag ranges
    auto* granularity = integer_range(app.add_option("--granularity", f.granularity,
                                                     "FFN width of every layer (one of the "
                                                     "granularities)"),
                                      1, kMaxWidth);
    auto* budget = positive_real(app.add_option("--budget-params", f.budget_params,
                                                "Best Mix'n'Match submodel within this many "
                                                "parameters"),
                                 kMaxParameters);
    auto* config = app.add_option("--config", f.config,
                                  "JSON file: {\"ffn\": [...], \"heads\": "
                                  "[...], \"skip\": [...]}");
    integer_range(app.add_option("--search", f.search,
                                 "With --budget-params: score candidates on this many validation "
                                 "batches"),
                  1, kMaxSteps)
        ->needs(budget);
    app.add_option("--data-dir", f.data_dir, "Text corpus for --search");
    integer_range(app.add_option("--skip", f.skip,
                                 "Layers to leave out (with --granularity or --budget-params)")
                      ->delimiter(','),
                  0, kMaxLayers)
        ->excludes(config);
    granularity->excludes(budget)->excludes(config)->excludes(list);
    budget->excludes(config)->excludes(list);
    config->excludes(list);
    out->excludes(list);
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    STRATA_CHECK(f.list || *granularity || *budget || *config,
                 "choose a submodel: --granularity, --budget-params or --config (or --list)");
    STRATA_CHECK(f.list || *out, "--out is required to extract a submodel");
    // Before any work: the submodel never replaces the checkpoint it is cut from, nor a
    // checkpoint the user did not offer.
    core::check_writable("--out", f.out, core::OutputKind::Directory, /*creates_parents=*/false);
    core::check_output("--out", f.out, {f.checkpoint, f.config}, f.overwrite);
    return run(f);
  });
}
