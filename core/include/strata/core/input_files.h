#pragma once
// Opening the files users hand us, with errors a person can act on: a missing file is "no
// such file", a directory given as a file is "a directory", and neither says
// "basic_filebuf::underflow error reading the file" or a bare "cannot open". Every reader
// of a user's file opens it through here (checkpoints, schedules, .qmoe, data sets,
// configs).

#include <fstream>
#include <string>

namespace strata::core {

// Raises strata::Error unless `path` is a regular file this process may read:
// "<what> <path>: no such file", "...: is a directory, expected a file",
// "...: cannot read (Permission denied)". `what` says where the path came from ("--load",
// "checkpoint"); empty for none.
void check_input_file(const std::string& path, const std::string& what = "");

// check_input_file, then the open stream (binary).
std::ifstream open_input(const std::string& path, const std::string& what = "");

// The whole file as bytes (check_input_file's errors, then "read error").
std::string read_input(const std::string& path, const std::string& what = "");

// Raises strata::Error unless `path` is a directory: "<what> <path>: no such directory"
// (with `hint` after it, e.g. "install the fortunes package"), "...: is a file, expected a
// directory".
void check_input_directory(const std::string& path, const std::string& what,
                           const std::string& hint = "");

}  // namespace strata::core
