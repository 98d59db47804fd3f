#pragma once
// Shared by the libFuzzer targets of the file parsers: the parsers read files, so each
// input is written to a scratch path first. A parser may reject an input only with an
// exception derived from std::exception (strata::Error, c10::Error, nlohmann's errors):
// that is the "clear error" programs print as one line. A crash, an out-of-bounds access
// (AddressSanitizer), an abort or a hang is a bug.

#include <unistd.h>
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace strata::fuzz {

// A folder of this process's own, emptied for each input.
inline std::filesystem::path scratch() {
  static const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("strata-fuzz-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_file(const std::filesystem::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
  write_file(path, text.data(), text.size());
}

// Checksums are hex strings of XXH64/XXH3 values in the formats; an input whose JSON
// names tensors gets them recomputed, so that the fuzzer reaches the checks behind them.
inline std::string hex64(uint64_t value) {
  static const char* digits = "0123456789abcdef";
  std::string text(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) text[i] = digits[value & 15];
  return text;
}

// Sets "xxh64" of every {"offset", "nbytes"} entry of json[list] whose bytes lie inside
// `payload` to `hash` of those bytes. Leaves anything malformed as it is.
template <typename Hash>
void fix_checksums(nlohmann::json& json, const char* list, const std::string& payload, Hash hash) {
  if (!json.is_object() || !json.contains(list) || !json[list].is_array()) return;
  for (auto& entry : json[list]) {
    if (!entry.is_object() || !entry.contains("offset") || !entry.contains("nbytes")) continue;
    if (!entry["offset"].is_number_unsigned() || !entry["nbytes"].is_number_unsigned()) continue;
    const uint64_t offset = entry["offset"].get<uint64_t>(),
                   nbytes = entry["nbytes"].get<uint64_t>();
    if (offset > payload.size() || nbytes > payload.size() - offset) continue;
    entry["xxh64"] = hex64(hash(payload.data() + offset, nbytes));
  }
}

// Splits an input into a JSON text and a binary payload: the first two bytes give the
// JSON's length (little-endian), the rest after it is the payload.
inline void split_input(const uint8_t* data, size_t size, std::string& json, std::string& payload) {
  if (size < 2) return;
  const size_t length = std::min<size_t>(data[0] | (size_t{data[1]} << 8), size - 2);
  json.assign(reinterpret_cast<const char*>(data + 2), length);
  payload.assign(reinterpret_cast<const char*>(data + 2 + length), size - 2 - length);
}

}  // namespace strata::fuzz

// The body of every target: run `parse`, accept std::exception as a clear rejection.
#define STRATA_FUZZ_TARGET(...)                                             \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    try {                                                                   \
      __VA_ARGS__                                                           \
    } catch (const std::exception&) {                                       \
    }                                                                       \
    return 0;                                                               \
  }
