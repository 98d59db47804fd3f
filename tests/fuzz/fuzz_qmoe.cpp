// Compressed-expert files (moe::read_qmoe, as strata-qmoe and the loader read them): the
// input is a header JSON and a payload (split_input). Each input is tried as a raw file
// and as a well-framed one (magic, length, header checksum and tensor checksums made
// right), so that the code-stream and shape checks behind the checksums are fuzzed too.
#include "fuzz_support.h"
#include "strata/moe/qmoe_file.h"

namespace {

void put_u64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void try_file(const std::string& bytes) {
  const auto path = strata::fuzz::scratch() / "experts.qmoe";
  strata::fuzz::write_file(path, bytes);
  try {
    const strata::moe::QmoeModel model = strata::moe::read_qmoe(path.string());
    for (const auto& layer : model.layers) strata::moe::make_compressed_experts(layer);
  } catch (const std::exception&) {
  }
}

}  // namespace

STRATA_FUZZ_TARGET({
  try_file(std::string(reinterpret_cast<const char*>(data), size));
  std::string header, payload;
  strata::fuzz::split_input(data, size, header, payload);
  nlohmann::json json = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) {
    strata::fuzz::fix_checksums(json, "tensors", payload,
                                [](const void* p, size_t n) { return XXH3_64bits(p, n); });
    header = json.dump();
  }
  std::string file = "STRQMOE\n";
  put_u64(file, header.size());
  file += header;
  put_u64(file, XXH3_64bits(header.data(), header.size()));
  file += payload;
  try_file(file);
})
