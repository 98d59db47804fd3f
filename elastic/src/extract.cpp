#include "strata/elastic/extract.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "strata/core/error.h"
#include "strata/core/json_fields.h"
#include "strata/core/timer.h"

namespace strata::elastic {

namespace fs = std::filesystem;

nlohmann::json matformer_to_json(const std::vector<Granularity>& granularities) {
  nlohmann::json list = nlohmann::json::array();
  for (const Granularity& g : granularities) list.push_back({{"ffn", g.ffn}, {"heads", g.heads}});
  return {{"granularities", list}};
}

MatFormerCheckpoint read_matformer_checkpoint(const core::CheckpointReader& reader) {
  const nlohmann::json& extra = reader.extra();
  STRATA_CHECK(extra.contains("matformer"), "checkpoint ", reader.path(),
               " is not a MatFormer checkpoint (no \"matformer\" entry; train it with "
               "train_lm --matformer)");
  MatFormerCheckpoint info;
  try {
    info.model = core::transformer_lm_from_json(extra);
  } catch (const Error& e) {
    STRATA_FAIL("checkpoint ", reader.path(), ": ", e.what());
  }
  const core::JsonField fields(extra, reader.path() + "/manifest.json", "extra");
  std::vector<int64_t> ffn, heads;
  for (const core::JsonField& g : fields["matformer"]["granularities"].elements()) {
    ffn.push_back(g["ffn"].integer(1));
    heads.push_back(g["heads"].integer(1));
  }
  try {
    info.granularities = matformer_granularities(
        info.model, MatFormerOptions().granularities(ffn).head_granularities(heads));
  } catch (const Error& e) {
    STRATA_FAIL("checkpoint ", reader.path(), ": ", e.what());
  }
  if (fields.has("mix_n_match")) info.scored = scored_from_json(fields["mix_n_match"]);
  return info;
}

namespace {

// Where a tensor of the universal model goes in the submodel, and how it is cut.
struct Cut {
  bool keep = true;
  std::string name;  // in the submodel
  int64_t layer = -1;
};

Cut cut_of(const std::string& name, const std::vector<int64_t>& new_index) {
  if (name.rfind("block", 0) != 0) return {true, name, -1};
  const size_t dot = name.find('.');
  const int64_t layer = std::stoll(name.substr(5, dot - 5));
  const int64_t renumbered = new_index.at(static_cast<size_t>(layer));
  if (renumbered < 0) return {false, "", layer};
  return {true, "block" + std::to_string(renumbered) + name.substr(dot), layer};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The submodel's part of one universal tensor of layer `layer`.
at::Tensor slice(const std::string& name, const at::Tensor& t,
                 const core::TransformerLMOptions& model, const Submodel& s, int64_t layer) {
  if (layer < 0) return t;
  const auto i = static_cast<size_t>(layer);
  const int64_t inner = model.heads() * model.head_dim(), width = s.heads[i] * model.head_dim();
  if (ends_with(name, ".attn.qkv.weight") || ends_with(name, ".attn.qkv.bias")) {
    // The first heads of each of the query, key and value blocks.
    return at::cat(
        {t.narrow(0, 0, width), t.narrow(0, inner, width), t.narrow(0, 2 * inner, width)});
  }
  if (ends_with(name, ".attn.out.weight")) return t.narrow(1, 0, width);
  if (ends_with(name, ".ffn_in.weight") || ends_with(name, ".ffn_in.bias"))
    return t.narrow(0, 0, s.ffn[i]);
  if (ends_with(name, ".ffn_out.weight")) return t.narrow(1, 0, s.ffn[i]);
  return t;
}

}  // namespace

ExtractReport extract_submodel(const std::string& in, const Submodel& submodel,
                               const std::string& out) {
  core::Stopwatch watch;
  core::CheckpointReader reader(in);
  const MatFormerCheckpoint info = read_matformer_checkpoint(reader);
  check_submodel(info.model, info.granularities, submodel);
  const fs::path parent = fs::path(out).parent_path();
  STRATA_CHECK(parent.empty() || fs::is_directory(parent), "output directory ", parent.string(),
               " does not exist");
  STRATA_CHECK(!fs::exists(out) || fs::exists(fs::path(out) / "manifest.json"), "output ", out,
               " exists and is not a checkpoint; not replacing it");

  // The checkpoint must hold exactly its model's tensors (optimizer state aside), with
  // their shapes: checked on the manifest before reading a byte.
  const auto universal = core::transformer_lm_shapes(info.model);
  std::set<std::string> seen;
  for (const auto& e : reader.entries()) {
    if (e.kind == "optimizer") continue;
    const auto it = universal.find(e.name);
    STRATA_CHECK(it != universal.end(), "checkpoint ", in, " has tensor '", e.name,
                 "', which its fortunes-lm does not");
    STRATA_CHECK(it->second == e.shape, "checkpoint ", in, ": tensor '", e.name, "' has shape ",
                 c10::IntArrayRef(e.shape), ", expected ", c10::IntArrayRef(it->second));
    seen.insert(e.name);
  }
  for (const auto& [name, shape] : universal)
    STRATA_CHECK(seen.count(name), "checkpoint ", in, " lacks tensor '", name, "'");

  std::vector<int64_t> new_index(static_cast<size_t>(info.model.layers()));
  const std::set<int64_t> skip(submodel.skip.begin(), submodel.skip.end());
  for (int64_t i = 0, next = 0; i < info.model.layers(); ++i)
    new_index[static_cast<size_t>(i)] = skip.count(i) ? -1 : next++;

  ExtractReport report;
  report.submodel = submodel;
  report.options = submodel_options(info.model, submodel);
  const ScoredSubmodel measured = measure_submodel(info.model, submodel);
  report.parameters = measured.parameters;
  report.flops = measured.flops;
  const auto expected = core::transformer_lm_shapes(report.options);

  core::CheckpointWriter writer(out);
  for (const auto& e : reader.entries()) {
    if (e.kind == "optimizer") continue;
    const Cut cut = cut_of(e.name, new_index);
    if (!cut.keep) continue;
    const at::Tensor part = slice(e.name, reader.read(e.name), info.model, submodel, cut.layer);
    STRATA_CHECK(part.sizes() == c10::IntArrayRef(expected.at(cut.name)),
                 "extract: internal error: '", cut.name, "' cut to ", part.sizes(), ", expected ",
                 c10::IntArrayRef(expected.at(cut.name)));
    writer.add(cut.name, e.kind, part);
    report.bytes_written += static_cast<int64_t>(part.nbytes());
  }
  nlohmann::json extra = core::transformer_lm_to_json(report.options);
  extra["extracted_from"] = in;
  extra["submodel"] = submodel.to_json();
  writer.commit(reader.step(), extra);
  report.seconds = watch.seconds();
  return report;
}

}  // namespace strata::elastic
