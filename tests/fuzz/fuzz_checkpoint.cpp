// Checkpoints (core::CheckpointReader, core::load_checkpoint): the input is a manifest and
// tensors.bin (fuzz_support.h's split_input). Every input is tried twice, as given and with
// the tensors' checksums recomputed, so that shapes, dtypes, offsets and the load into a
// model are fuzzed behind the checksums too.
#include <torch/torch.h>

#include "fuzz_support.h"
#include "strata/core/checkpoint.h"

namespace {

void try_checkpoint(const std::string& manifest, const std::string& payload) {
  const auto dir = strata::fuzz::scratch() / "step-00000001";
  std::filesystem::create_directories(dir);
  strata::fuzz::write_file(dir / "manifest.json", manifest);
  strata::fuzz::write_file(dir / "tensors.bin", payload);
  try {
    strata::core::CheckpointReader reader(dir.string());
    for (const auto& entry : reader.entries()) reader.read(entry.name);
  } catch (const std::exception&) {
  }
  // A model with a parameter, a buffer and momentum state, as the examples save them.
  torch::nn::Sequential model(torch::nn::Linear(2, 2), torch::nn::BatchNorm1d(2));
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  try {
    strata::core::load_checkpoint(dir.string(), *model, &sgd);
  } catch (const std::exception&) {
  }
}

}  // namespace

STRATA_FUZZ_TARGET({
  std::string manifest, payload;
  strata::fuzz::split_input(data, size, manifest, payload);
  try_checkpoint(manifest, payload);
  nlohmann::json json = nlohmann::json::parse(manifest, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  // Checkpoints hash with XXH3 (core/checkpoint.cpp): the same here lets the second pass past the
  // checksums.
  strata::fuzz::fix_checksums(json, "tensors", payload,
                              [](const void* p, size_t n) { return XXH3_64bits(p, n); });
  try_checkpoint(json.dump(), payload);
})
