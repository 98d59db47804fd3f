#include "strata/elastic/matformer.h"

#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "strata/core/error.h"
#include "strata/elastic/mat_ffn.h"

namespace strata::elastic {

std::vector<int64_t> checked_granularities(std::vector<int64_t> widths, int64_t full,
                                           const std::string& what) {
  STRATA_CHECK(!widths.empty(), what, ": no granularities, expected at least one width");
  std::sort(widths.begin(), widths.end(), std::greater<>());
  for (size_t i = 0; i < widths.size(); ++i) {
    STRATA_CHECK(widths[i] >= 1 && widths[i] <= full, what, ": granularity ", widths[i],
                 ", expected 1 to ", full);
    STRATA_CHECK(i == 0 || widths[i] != widths[i - 1], what, ": granularity ", widths[i],
                 " appears twice");
  }
  return widths;
}

std::string join_widths(const std::vector<int64_t>& widths) {
  std::string out;
  for (const int64_t w : widths) out += (out.empty() ? "" : ", ") + std::to_string(w);
  return out;
}

std::vector<Granularity> matformer_granularities(const core::TransformerLMOptions& model,
                                                 const MatFormerOptions& options) {
  model.validate();
  STRATA_CHECK(model.layer_ffn().empty() && model.layer_heads().empty(),
               "MatFormer: the universal model must have one FFN width and one head count for "
               "all layers");
  const std::vector<int64_t> ffn = options.granularities().empty()
                                       ? default_granularities(model.ffn())
                                       : options.granularities();
  checked_granularities(ffn, model.ffn(), "MatFormer");  // ranges and repeats
  std::vector<int64_t> heads = options.head_granularities();
  if (heads.empty()) heads.assign(ffn.size(), model.heads());
  STRATA_CHECK(heads.size() == ffn.size(), "MatFormer: ", heads.size(), " head granularities for ",
               ffn.size(), " FFN granularities, expected one each");

  // The i-th head count goes with the i-th FFN width, as given; then largest first.
  std::vector<Granularity> out;
  for (size_t i = 0; i < ffn.size(); ++i) {
    STRATA_CHECK(heads[i] >= 1 && heads[i] <= model.heads(), "MatFormer: head granularity ",
                 heads[i], ", expected 1 to ", model.heads());
    out.push_back({ffn[i], heads[i]});
  }
  std::sort(out.begin(), out.end(),
            [](const Granularity& a, const Granularity& b) { return a.ffn > b.ffn; });
  STRATA_CHECK(out.front().ffn == model.ffn() && out.front().heads == model.heads(),
               "MatFormer: the largest granularity is FFN ", out.front().ffn, " with ",
               out.front().heads, " heads, expected the whole model (FFN ", model.ffn(), ", ",
               model.heads(), " heads)");
  for (size_t i = 1; i < out.size(); ++i)
    STRATA_CHECK(out[i].heads <= out[i - 1].heads,
                 "MatFormer: head granularities must not grow "
                 "as the FFN shrinks (",
                 out[i].heads, " heads at FFN ", out[i].ffn, ", ", out[i - 1].heads, " at FFN ",
                 out[i - 1].ffn, ")");
  return out;
}

// ---------------------------------------------------------------- Submodel

Submodel Submodel::uniform(const core::TransformerLMOptions& model, const Granularity& g) {
  return {std::vector<int64_t>(model.layers(), g.ffn),
          std::vector<int64_t>(model.layers(), g.heads),
          {}};
}

std::string Submodel::describe() const {
  const auto slashed = [](const std::vector<int64_t>& v) {
    std::string s;
    for (const int64_t x : v) s += (s.empty() ? "" : "/") + std::to_string(x);
    return s;
  };
  std::string out = "ffn " + slashed(ffn) + ", heads " + slashed(heads);
  if (!skip.empty()) out += ", skip " + join_widths(skip);
  return out;
}

nlohmann::json Submodel::to_json() const {
  return {{"ffn", ffn}, {"heads", heads}, {"skip", skip}};
}

Submodel Submodel::from_json(const nlohmann::json& j, const std::string& source) {
  return from_json(core::JsonField(j, source));
}

Submodel Submodel::from_json(const core::JsonField& field) {
  field.object();
  Submodel s;
  s.ffn = field["ffn"].integers(0);
  if (field.has("heads")) s.heads = field["heads"].integers(0);
  if (field.has("skip")) s.skip = field["skip"].integers(0);
  return s;
}

void check_submodel(const core::TransformerLMOptions& model,
                    const std::vector<Granularity>& granularities, const Submodel& s) {
  const auto layers = static_cast<size_t>(model.layers());
  STRATA_CHECK(s.ffn.size() == layers && s.heads.size() == layers, "submodel ", s.describe(),
               ": expected an FFN width and a head count for each of the ", layers, " layers");
  std::vector<int64_t> ffn_widths, head_counts;
  for (const Granularity& g : granularities) {
    ffn_widths.push_back(g.ffn);
    head_counts.push_back(g.heads);
  }
  for (size_t i = 0; i < layers; ++i) {
    STRATA_CHECK(std::count(ffn_widths.begin(), ffn_widths.end(), s.ffn[i]), "submodel: FFN width ",
                 s.ffn[i], " of layer ", i, " is not a granularity of the model (",
                 join_widths(ffn_widths), ")");
    STRATA_CHECK(std::count(head_counts.begin(), head_counts.end(), s.heads[i]),
                 "submodel: ", s.heads[i], " heads in layer ", i,
                 " is not a head granularity of the model (", join_widths(head_counts), ")");
  }
  for (size_t i = 0; i < s.skip.size(); ++i) {
    STRATA_CHECK(s.skip[i] >= 0 && s.skip[i] < model.layers(), "submodel: skipped layer ",
                 s.skip[i], ", expected 0 to ", model.layers() - 1);
    STRATA_CHECK(i == 0 || s.skip[i] > s.skip[i - 1],
                 "submodel: skipped layers must be ascending without repeats");
  }
  STRATA_CHECK(s.skip.size() < layers, "submodel: skips all ", layers, " layers");
}

void apply_submodel(torch::nn::Module& model, const Submodel& s) {
  std::vector<core::DecoderBlock> blocks = core::decoder_blocks(model);
  STRATA_CHECK(s.ffn.size() == blocks.size() && s.heads.size() == blocks.size(), "submodel ",
               s.describe(), ": the model has ", blocks.size(), " decoder blocks");
  const std::set<int64_t> skip(s.skip.begin(), s.skip.end());
  for (size_t i = 0; i < blocks.size(); ++i) {
    blocks[i]->set_width(s.ffn[i], s.heads[i]);
    blocks[i]->skip = skip.count(static_cast<int64_t>(i)) > 0;
  }
}

void reset_submodel(torch::nn::Module& model) {
  for (core::DecoderBlock& block : core::decoder_blocks(model)) {
    block->set_width(block->ffn_in->weight.size(0), block->attn->heads);
    block->skip = false;
  }
}

core::TransformerLMOptions submodel_options(const core::TransformerLMOptions& model,
                                            const Submodel& s) {
  STRATA_CHECK(
      s.ffn.size() == static_cast<size_t>(model.layers()) && s.heads.size() == s.ffn.size(),
      "submodel ", s.describe(), ": expected one width per layer of the ", model.layers());
  const std::set<int64_t> skip(s.skip.begin(), s.skip.end());
  std::vector<int64_t> ffn, heads;
  for (int64_t i = 0; i < model.layers(); ++i) {
    if (skip.count(i)) continue;
    ffn.push_back(s.ffn[i]);
    heads.push_back(s.heads[i]);
  }
  // One width for every layer is an ordinary fortunes-lm, described without per-layer
  // lists (so train_lm --ffn m can resume it); the head count can only be folded in when it
  // is the model's, as it sets the head width.
  const auto all_equal = [](const std::vector<int64_t>& v, int64_t x) {
    return std::all_of(v.begin(), v.end(), [&](int64_t y) { return y == x; });
  };
  core::TransformerLMOptions out = model;
  out.layers(static_cast<int64_t>(ffn.size()));
  if (all_equal(ffn, ffn.front())) {
    out.ffn(ffn.front());
  } else {
    out.layer_ffn(ffn);
  }
  if (!all_equal(heads, model.heads())) out.layer_heads(heads);
  out.validate();
  return out;
}

int64_t count_parameters(const core::TransformerLMOptions& o) {
  const int64_t d = o.d_model();
  int64_t n = o.vocab() * d + o.context() * d + 2 * d;  // embeddings, final norm; head tied
  for (int64_t i = 0; i < o.layers(); ++i) {
    const int64_t inner = o.heads_of(i) * o.head_dim(), f = o.ffn_of(i);
    n += 4 * d;                      // two LayerNorms
    n += 3 * inner * d + 3 * inner;  // qkv
    n += inner * d + d;              // out
    n += d * f + f + f * d + d;      // ffn_in, ffn_out
  }
  return n;
}

double forward_flops(const core::TransformerLMOptions& o, int64_t tokens) {
  const double t = static_cast<double>(tokens), d = static_cast<double>(o.d_model());
  double multiply_adds = t * d * static_cast<double>(o.vocab());  // the head
  for (int64_t i = 0; i < o.layers(); ++i) {
    const double inner = static_cast<double>(o.heads_of(i) * o.head_dim());
    const double f = static_cast<double>(o.ffn_of(i));
    multiply_adds += t * (4 * inner * d + 2 * d * f);  // qkv, out, ffn_in, ffn_out
    multiply_adds += 2 * t * t * inner;                // q k^T and p v
  }
  return 2 * multiply_adds;
}

}  // namespace strata::elastic
