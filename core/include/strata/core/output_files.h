#pragma once
// Outputs never replace inputs, and never replace what the user did not ask to lose: every
// program checks each output path with check_output before doing any work, and writes
// single files with write_file_atomically (a temporary name in the same directory, then a
// rename), so that an output is either the old file or the complete new one.

#include <string>
#include <vector>

namespace strata::core {

// Raises strata::Error, one line naming `flag` and `path`, when the output `path`:
//  - is the same file or directory as one of `inputs` (after resolving ".", ".." and
//    symbolic links; inputs that do not exist are skipped), with or without `overwrite`;
//  - exists and `overwrite` is false;
//  - is an existing directory holding anything but a checkpoint's own files, even with
//    `overwrite`: strata replaces a checkpoint directory, and never removes a directory
//    with other files in it.
// An empty `path` (an optional output that was not asked for) passes.
void check_output(const std::string& flag, const std::string& path,
                  const std::vector<std::string>& inputs, bool overwrite);

// Writes `bytes` to `path` through "<path>.tmp-<pid>" in the same directory and a rename:
// never half a file, and the temporary file is removed when writing fails.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace strata::core
