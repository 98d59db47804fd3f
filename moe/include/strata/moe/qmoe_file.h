#pragma once
// The compressed experts of a model in one file (".qmoe"):
//
//   bytes 0..7    magic "STRQMOE\n"
//   bytes 8..15   H, the header's length (uint64 little-endian)
//   H bytes       header: JSON {"format": "strata-qmoe", "version": 1, "dictionary": {...},
//                 "layers": [{"name", "experts", "d", "hidden"}], "extra": {...},
//                 "tensors": [{"name", "dtype", "shape", "offset", "nbytes", "xxh64"}]}
//   8 bytes       XXH3-64 of the header bytes (uint64 little-endian)
//   payload       every tensor's bytes back to back, offsets relative to the payload
//
// Per layer L and expert e the tensors are "L/e/w_in/codes", ".../row_offsets",
// ".../levels" (a TernaryMatrix, the reference's w_comp, row_off, ter_minmax) and the same
// for w_out, and "L/b_in" [E, hidden], "L/b_out" [E, d] in float32. A layer whose
// experts are coded with a fitted dictionary (its "dictionary": "fitted" in "layers";
// absent or "reference": QMoE's) also has "L/dictionary", the 9 pair probabilities in
// float64 the dictionary is rebuilt from, and no row_offsets (they follow from the codes,
// and cost 32 bits a row). The file is written
// under "<path>.tmp-<pid>" and renamed into place. Reading checks everything (magic,
// header checksum, sizes, every tensor's checksum, every code stream's structure) and
// fails with one error that names the file and what is wrong.

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "strata/moe/compressed_expert.h"
#include "strata/moe/ternary_codec.h"

namespace strata::moe {

// The experts of one MoE layer: w_in[e] [hidden, d], w_out[e] [d, hidden].
struct QmoeLayer {
  std::string name;  // the layer's parameter prefix in the model, e.g. "blocks.1.moe"
  std::vector<TernaryMatrix> w_in, w_out;
  at::Tensor b_in, b_out;  // float [E, hidden], [E, d]

  int64_t experts() const { return static_cast<int64_t>(w_in.size()); }
  // The layer's fitted dictionary (every matrix of a layer is in the same one); null: the
  // reference dictionary.
  const std::shared_ptr<const TernaryDictionary>& fitted() const { return w_in.at(0).fitted; }
  int64_t model_dim() const { return w_in.at(0).cols; }
  int64_t hidden_dim() const { return w_in.at(0).rows; }
  int64_t weight_bytes() const;  // compressed weights, not biases
  double bits_per_weight() const;
};

struct QmoeModel {
  std::vector<QmoeLayer> layers;
  nlohmann::json extra = nlohmann::json::object();  // free-form, e.g. how it was compressed
};

void write_qmoe(const std::string& path, const QmoeModel& model);
QmoeModel read_qmoe(const std::string& path);

// The module that runs a layer's experts from its compressed weights.
CompressedExperts make_compressed_experts(const QmoeLayer& layer,
                                          const CompressedLinearOptions& options = {});

}  // namespace strata::moe
