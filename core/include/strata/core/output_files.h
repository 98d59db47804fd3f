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

// What an output flag names: a file (metrics, traces, exports) or a directory (checkpoints).
enum class OutputKind { File, Directory };

// Raises strata::Error, one line naming `flag` and `path` and saying why, when `path` cannot
// be written as a `kind` (strata's writers create missing parent directories, and a
// missing checkpoint directory): the path is a directory where a file is meant ("is a
// directory") or a file where a directory is meant ("is not a directory"), a component of
// its parent is a file ("is not a directory"), or its directory (or the nearest existing
// one above it) does not take new files ("not writable (reason)"). With `creates_parents`
// false (a writer that needs the parent to exist), a missing parent is "no such directory".
// The check tries what the writer will do, creating and removing a file of its own (as
// root, permission bits alone would say yes to a read-only mount or /proc); it leaves
// nothing behind. Call it before the work starts, so that a bad path costs nothing. An
// empty `path` (an optional output that was not asked for) passes.
void check_writable(const std::string& flag, const std::string& path,
                    OutputKind kind = OutputKind::File, bool creates_parents = true);

// Writes `bytes` to `path` through "<path>.tmp-<pid>" in the same directory and a rename:
// never half a file, and the temporary file is removed when writing fails.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace strata::core
