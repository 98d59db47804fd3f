#pragma once
// Checkpoints that do not depend on how the model is partitioned: every tensor is stored
// under its name in the whole model, with a JSON manifest and a checksum per tensor.
//
// On disk a checkpoint is a directory:
//   <path>/manifest.json  {"format": "strata-checkpoint", "version": ..., "step": N,
//                          "extra": {...}, "optimizer": {"type": ..., "lr": [...]},
//                          "tensors": [{"name", "kind", "dtype", "shape", "offset",
//                                       "nbytes", "xxh64"}, ...]}
//   <path>/tensors.bin    the raw bytes of every tensor, back to back
// It is written under `<path>.tmp-<pid>` and renamed into place, so `path` is either the
// old checkpoint or the complete new one, never a mix.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace torch {
namespace nn {
class Module;
}
namespace optim {
class Optimizer;
}
}  // namespace torch

namespace strata::core {

// Saves the parameters and buffers of `model` (by their recursive names, e.g.
// "0.weight"), the state of `optimizer` when not null (torch::optim::SGD, Adam or AdamW;
// stored as "optimizer/<parameter name>/<field>"), `step` and `extra` (free-form JSON).
// Replaces an existing checkpoint at `path` safely. Creates missing parent directories.
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     torch::optim::Optimizer* optimizer, int64_t step,
                     const nlohmann::json& extra = {});

// Loads a checkpoint saved by save_checkpoint into `model` (and `optimizer`, when not
// null) and returns its step; `extra`, when not null, receives the saved extra JSON.
// Everything is verified first (manifest, names, shapes, dtypes, sizes, checksums); on
// any error a strata::Error is thrown and model and optimizer are left untouched.
// The optimizer's state and learning rates become those of the checkpoint: if the
// checkpoint holds no optimizer state, the optimizer's state is cleared.
int64_t load_checkpoint(const std::string& path, torch::nn::Module& model,
                        torch::optim::Optimizer* optimizer, nlohmann::json* extra = nullptr);

// `<dir>/step-<step as 8 digits>`, e.g. "ckpt/step-00001200".
std::string checkpoint_path(const std::string& dir, int64_t step);

// The complete checkpoint (a `step-N` directory with a manifest) with the highest step
// in `dir`, ignoring unfinished `*.tmp-*` directories; nullopt if none or no such dir.
std::optional<std::string> latest_checkpoint(const std::string& dir);

// What a --resume flag names: `path` itself when it is a checkpoint (has a manifest),
// else latest_checkpoint(path); nullopt if neither.
std::optional<std::string> find_checkpoint(const std::string& path);

}  // namespace strata::core
