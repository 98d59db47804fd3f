#include "strata/core/output_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "strata/core/error.h"

namespace strata::core {
namespace fs = std::filesystem;

namespace {

// The files a checkpoint directory holds (core/src/checkpoint.cpp writes exactly these):
// replacing such a directory loses nothing but the checkpoint the user asked to replace.
bool only_checkpoint_files(const fs::path& dir, std::string* other) {
  static const std::set<std::string> kCheckpointFiles = {"manifest.json", "tensors.bin"};
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!kCheckpointFiles.count(name)) {
      *other = name;
      return false;
    }
  }
  return true;
}

}  // namespace

void check_output(const std::string& flag, const std::string& path,
                  const std::vector<std::string>& inputs, bool overwrite) {
  if (path.empty()) return;
  std::error_code ec;
  const fs::path out(path);
  if (!fs::exists(out, ec)) return;
  for (const std::string& input : inputs) {
    if (input.empty() || !fs::exists(input, ec)) continue;
    STRATA_CHECK(!fs::equivalent(out, input, ec), flag, " ", path, ": is the input ", input,
                 "; an output never replaces an input, write it elsewhere");
  }
  STRATA_CHECK(overwrite, flag, " ", path, ": exists; pass --overwrite to replace it");
  if (fs::is_directory(out, ec)) {
    std::string other;
    STRATA_CHECK(only_checkpoint_files(out, &other), flag, " ", path, ": is a directory holding ",
                 other,
                 ", not only a checkpoint; strata never removes a directory, write elsewhere");
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    STRATA_CHECK(out.good(), tmp, ": cannot create (", std::strerror(errno), ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      STRATA_FAIL(tmp, ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    STRATA_FAIL(path, ": cannot write (", reason, ")");
  }
}

}  // namespace strata::core
