#include "strata/core/output_files.h"

#include <fcntl.h>
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

// `path`'s directory, "." for a bare file name.
fs::path directory_of(const fs::path& path) {
  const fs::path parent = path.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// Whether a new file can be created in `dir`, by creating one and removing it; the error
// text when not. Permission bits do not tell: root passes them on /proc or a read-only mount.
std::string try_creating_a_file_in(const fs::path& dir) {
  const fs::path probe = dir / (".strata-write-check-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    // /proc and other synthetic file systems answer "no such file" for a new name.
    return errno == ENOENT ? "it takes no new files" : std::strerror(errno);
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

}  // namespace

void check_writable(const std::string& flag, const std::string& path, OutputKind kind,
                    bool creates_parents) {
  if (path.empty()) return;
  std::error_code ec;
  const fs::path target(path);
  const fs::file_status status = fs::status(target, ec);
  fs::path dir;  // where the writer will create its files
  if (fs::exists(status)) {
    if (kind == OutputKind::File) {
      STRATA_CHECK(!fs::is_directory(status), flag, " ", path,
                   ": is a directory, expected a file name");
      dir = directory_of(target);
    } else {
      STRATA_CHECK(fs::is_directory(status), flag, " ", path,
                   ": is not a directory (a file is there)");
      dir = target;
    }
  } else {
    // The writer creates what is missing below the nearest existing directory.
    const fs::path parent = directory_of(target);
    dir = parent;
    while (!fs::exists(dir, ec) && dir != dir.parent_path()) dir = directory_of(dir);
    STRATA_CHECK(fs::is_directory(dir, ec), flag, " ", path, ": ", dir.string(),
                 " is not a directory");
    STRATA_CHECK(creates_parents || dir == parent, flag, " ", path, ": no such directory ",
                 parent.string());
  }
  const std::string why = try_creating_a_file_in(dir);
  STRATA_CHECK(why.empty(), flag, " ", path, ": directory ", dir.string(), " is not writable (",
               why, ")");
}

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
