#include "strata/core/input_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include "strata/core/error.h"

namespace strata::core {
namespace {

std::string label(const std::string& path, const std::string& what) {
  return what.empty() ? path : what + " " + path;
}

}  // namespace

void check_input_file(const std::string& path, const std::string& what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    STRATA_CHECK(error != ENOENT && error != ENOTDIR, label(path, what), ": no such file");
    STRATA_FAIL(label(path, what), ": cannot read (", std::strerror(error), ")");
  }
  STRATA_CHECK(!S_ISDIR(info.st_mode), label(path, what), ": is a directory, expected a file");
  STRATA_CHECK(::access(path.c_str(), R_OK) == 0, label(path, what), ": cannot read (",
               std::strerror(errno), ")");
}

std::ifstream open_input(const std::string& path, const std::string& what) {
  check_input_file(path, what);
  std::ifstream in(path, std::ios::binary);
  STRATA_CHECK(in.good(), label(path, what), ": cannot read (", std::strerror(errno), ")");
  return in;
}

std::string read_input(const std::string& path, const std::string& what) {
  std::ifstream in = open_input(path, what);
  // istreambuf_iterator reports no errors; the stream's bad bit after it does.
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  STRATA_CHECK(!in.bad(), label(path, what), ": read error");
  return text;
}

void check_input_directory(const std::string& path, const std::string& what,
                           const std::string& hint) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    STRATA_CHECK(error != ENOENT && error != ENOTDIR, label(path, what), ": no such directory",
                 hint.empty() ? "" : " (" + hint + ")");
    STRATA_FAIL(label(path, what), ": cannot read (", std::strerror(error), ")");
  }
  STRATA_CHECK(S_ISDIR(info.st_mode), label(path, what), ": is a file, expected a directory");
}

}  // namespace strata::core
