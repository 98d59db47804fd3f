#pragma once
// Cutting a submodel out of a MatFormer checkpoint, as an ordinary dense fortunes-lm
// checkpoint (what tools/strata-extract does).
//
// A MatFormer checkpoint is a fortunes-lm checkpoint (examples/train_lm --matformer)
// whose extra also holds {"matformer": {"granularities": [{"ffn": .., "heads": ..}, ...]}}
// and, optionally, {"mix_n_match": [Mix'n'Match submodels scored after training]}. The extracted
// checkpoint holds the submodel's weights under the names make_transformer_lm gives them (kept
// layers renumbered), and its extra describes it with per-layer widths, so
// core::load_transformer_lm loads it without any MatFormer code: the first m rows of ffn_in and
// columns of ffn_out, the first h' heads' rows of each of q, k and v in qkv and their columns of
// out.
//
//   auto info = strata::elastic::read_matformer_checkpoint(reader);
//   auto report = strata::elastic::extract_submodel("universal/step-00002000",
//       Submodel::uniform(info.model, info.granularities[2]), "small");

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/core/checkpoint.h"
#include "strata/elastic/matformer.h"
#include "strata/elastic/mix_n_match.h"

namespace strata::elastic {

struct MatFormerCheckpoint {
  core::TransformerLMOptions model;
  std::vector<Granularity> granularities;  // largest first
  std::vector<ScoredSubmodel> scored;      // extra "mix_n_match"; may be empty
};

// The "matformer" entry of a checkpoint's extra, to store next to
// core::transformer_lm_to_json(model).
nlohmann::json matformer_to_json(const std::vector<Granularity>& granularities);

// Throws strata::Error for a checkpoint that is not a MatFormer fortunes-lm.
MatFormerCheckpoint read_matformer_checkpoint(const core::CheckpointReader& reader);

struct ExtractReport {
  Submodel submodel;
  core::TransformerLMOptions options;  // the extracted model's
  int64_t parameters = 0;
  double flops = 0;  // one forward pass over a sequence of the context
  int64_t bytes_written = 0;
  double seconds = 0;
};

// Writes the dense checkpoint of `submodel` cut from the MatFormer checkpoint `in` to
// `out`, one tensor at a time (memory: about one tensor of `in` plus one of `out`).
// Everything is checked before anything is written: the submodel against the
// checkpoint's granularities, the checkpoint's tensors against its model, and that the
// directory `out` goes into exists. Throws strata::Error and leaves nothing at `out`
// (an existing checkpoint there stays as it was) on any problem.
ExtractReport extract_submodel(const std::string& in, const Submodel& submodel,
                               const std::string& out);

}  // namespace strata::elastic
