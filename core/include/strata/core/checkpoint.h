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

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

// What a checkpoint holds, before it is written: every tensor by name, and the optimizer's
// type and learning rates (null without an optimizer). A model partitioned over ranks
// (a pipeline) gathers the contents of every part to one rank and writes them as one
// checkpoint, in the unpartitioned model's names.
struct CheckpointTensor {
  std::string name;
  std::string kind;  // "parameter", "buffer" or "optimizer"
  at::Tensor tensor;
};
struct CheckpointContents {
  std::vector<CheckpointTensor> tensors;
  nlohmann::json optimizer;  // {"type": "sgd", "lr": [...]} or null
};

// What save_checkpoint(path, model, optimizer, ...) writes. Raises strata::Error for an
// optimizer checkpoints do not understand or that holds a parameter `model` lacks.
CheckpointContents checkpoint_contents(const torch::nn::Module& model,
                                       torch::optim::Optimizer* optimizer);

// Writes `contents` as a checkpoint, atomically as save_checkpoint does. Tensor names
// must be unique.
void write_checkpoint(const std::string& path, const CheckpointContents& contents, int64_t step,
                      const nlohmann::json& extra = {});

// Writes a checkpoint one tensor at a time, so that a tool transforming a checkpoint holds
// one tensor in memory, not all: add() appends to `<path>.tmp-<pid>/tensors.bin`,
// commit() writes the manifest and renames the directory into place (replacing an
// existing checkpoint safely). Destroyed without commit(), it removes what it wrote.
// write_checkpoint is this with every tensor of `contents`.
class CheckpointWriter {
 public:
  // Creates missing parent directories of `path`.
  explicit CheckpointWriter(const std::string& path);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // `kind`: "parameter", "buffer" or "optimizer"; names must be unique.
  void add(const std::string& name, const std::string& kind, const at::Tensor& tensor);
  // `optimizer`: {"type": ..., "lr": [...]} or null, as CheckpointContents::optimizer.
  void commit(int64_t step, const nlohmann::json& extra = {},
              const nlohmann::json& optimizer = nullptr);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Reads a checkpoint one tensor at a time. The constructor reads and checks the manifest
// and the size of tensors.bin, or of every shard file and its checksum (strata::Error
// naming the problem); read() checks the tensor's (each piece's) checksum.
class CheckpointReader {
 public:
  struct Entry {
    std::string name;
    std::string kind;  // "parameter", "buffer" or "optimizer"
    at::ScalarType dtype;
    std::vector<int64_t> shape;
  };

  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const;
  int64_t step() const;
  const nlohmann::json& extra() const;
  // {"type": "SGD"|"Adam"|"AdamW", "lr": [...]}, or null when saved without an optimizer.
  const nlohmann::json& optimizer() const;
  // In file order.
  const std::vector<Entry>& entries() const;
  const Entry* find(const std::string& name) const;  // nullptr when absent
  // A fresh CPU tensor; strata::Error for an unknown name, a short read or a bad checksum.
  at::Tensor read(const std::string& name);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// ---------------------------------------------------------------- sharded checkpoints
// A checkpoint written by several processes at once (ZeRO's ranks, each holding a slice of
// every tensor): each writes its own shard file, then one of them writes the manifest last
// and renames the directory into place, so `path` is again the old checkpoint or the whole
// new one. On disk:
//   <path>/shard-<i>-of-<n>.bin  one per writer: its pieces back to back
//   <path>/manifest.json         as above plus "layout": "sharded", "shards": [{"file",
//                                "nbytes", "xxh64"}, ...], and per tensor "pieces": [{"shard",
//                                "offset", "start", "numel", "xxh64"}, ...] instead of
//                                "offset", "nbytes", "xxh64"
// A piece holds elements [start, start + numel) of the flattened tensor; a tensor's pieces
// cover it exactly once. Every reader here (CheckpointReader, load_checkpoint,
// latest_valid_checkpoint) reads both layouts, so a sharded checkpoint loads whole at any
// world size, ZeRO stage or pipeline split.
struct CheckpointPiece {
  std::string name;
  std::string kind;            // "parameter", "buffer" or "optimizer"
  std::vector<int64_t> shape;  // the whole tensor's
  int64_t start = 0;           // the first element of the flattened tensor in `data`
  at::Tensor data;             // numel() elements, in order
};

// `<path>.tmp-<id>`: where the shards are written before the commit. The writers must agree
// on `id` (one process's id) and the first must create it with begin_sharded_checkpoint.
std::string sharded_checkpoint_tmp(const std::string& path, const std::string& id);
// Creates `tmp` (and the missing parents of the checkpoint), replacing a stale one.
void begin_sharded_checkpoint(const std::string& tmp);
// Writes `pieces` as shard file `shard` of `shards` in `tmp`, fsynced; returns its manifest
// entry ({"file", "nbytes", "xxh64", "pieces": [...]}) for commit_sharded_checkpoint.
nlohmann::json write_checkpoint_shard(const std::string& tmp, int shard, int shards,
                                      const std::vector<CheckpointPiece>& pieces);
// Once every shard file is written: merges their entries (in shard order) into the manifest,
// writes it and renames `tmp` to `path` (replacing an existing checkpoint safely). Throws
// when the pieces disagree on a tensor's kind, dtype or shape.
void commit_sharded_checkpoint(const std::string& path, const std::string& tmp,
                               const std::vector<nlohmann::json>& shards, int64_t step,
                               const nlohmann::json& extra = {},
                               const nlohmann::json& optimizer = nullptr);
// Removes `tmp` after a failed write (best effort).
void abort_sharded_checkpoint(const std::string& tmp);

// Which tensors of a checkpoint a load must use.
enum class CheckpointMatch {
  Exact,   // the checkpoint holds exactly the model's tensors
  Subset,  // the model is a part of the checkpoint's model (one pipeline stage): tensors
           // and optimizer state for parameters the model lacks are skipped
};

// Loads a checkpoint saved by save_checkpoint into `model` (and `optimizer`, when not
// null) and returns its step; `extra`, when not null, receives the saved extra JSON.
// Everything is verified first (manifest, names, shapes, dtypes, sizes, checksums); on
// any error a strata::Error is thrown and model and optimizer are left untouched.
// The optimizer's state and learning rates become those of the checkpoint: if the
// checkpoint holds no optimizer state, the optimizer's state is cleared.
// With CheckpointMatch::Subset, every tensor of the model must still be in the checkpoint.
int64_t load_checkpoint(const std::string& path, torch::nn::Module& model,
                        torch::optim::Optimizer* optimizer, nlohmann::json* extra = nullptr,
                        CheckpointMatch match = CheckpointMatch::Exact);

// `<dir>/step-<step as 8 digits>`, e.g. "ckpt/step-00001200".
std::string checkpoint_path(const std::string& dir, int64_t step);

// The complete checkpoint (a `step-N` directory with a manifest) with the highest step
// in `dir`, ignoring unfinished `*.tmp-*` directories; nullopt if none or no such dir.
std::optional<std::string> latest_checkpoint(const std::string& dir);

// The newest checkpoint in `dir` that reads back whole: manifest, sizes and every
// tensor's checksum verified, older ones tried in turn. `rejected`, when not null,
// receives one line per newer checkpoint skipped (why it is invalid). nullopt if none.
std::optional<std::string> latest_valid_checkpoint(const std::string& dir,
                                                   std::vector<std::string>* rejected = nullptr);

// What a --resume flag names: `path` itself when it is a checkpoint (has a manifest),
// else latest_checkpoint(path); nullopt if neither.
std::optional<std::string> find_checkpoint(const std::string& path);

}  // namespace strata::core
