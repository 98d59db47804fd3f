// check_output, check_writable and write_file_atomically: an output never replaces an
// input, an existing output needs --overwrite, a directory with other files in it is never
// replaced, and an output that cannot be written is refused before any work, naming why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "strata/core/output_files.h"
#include "test_util.h"

using strata::core::check_output;
using strata::core::check_writable;
using strata::core::OutputKind;
using strata::core::write_file_atomically;
using strata::test::error_of;
using strata::test::read_file;
using strata::test::TempDir;
using strata::test::write_file;
namespace fs = std::filesystem;

TEST(OutputFiles, NewOrEmptyOutputPasses) {
  TempDir dir;
  write_file(dir / "in", "input");
  EXPECT_EQ(error_of([&] { check_output("--out", dir / "new", {dir / "in"}, false); }),
            "<no error>");
  EXPECT_EQ(error_of([&] { check_output("--out", "", {dir / "in"}, false); }), "<no error>");
}

TEST(OutputFiles, AnOutputNeverReplacesAnInput) {
  TempDir dir;
  write_file(dir / "in", "input");
  fs::create_directory(dir / "ckpt");
  fs::create_symlink(dir / "in", dir / "link");
  const std::string same_file = dir.path() + "/./sub/../in";
  fs::create_directory(dir / "sub");
  for (bool overwrite : {false, true}) {
    EXPECT_EQ(error_of([&] { check_output("--out", same_file, {dir / "in"}, overwrite); }),
              "--out " + same_file + ": is the input " + (dir / "in") +
                  "; an output never replaces an input, write it elsewhere");
    EXPECT_THAT(error_of([&] { check_output("--save", dir / "link", {dir / "in"}, overwrite); }),
                testing::HasSubstr("--save " + (dir / "link") + ": is the input"));
    EXPECT_THAT(error_of([&] {
                  check_output("--out", dir / "ckpt", {"", dir / "ckpt/"}, overwrite);
                }),
                testing::HasSubstr(": is the input"));
  }
  // An input that does not exist is skipped, not an error.
  EXPECT_EQ(error_of([&] { check_output("--out", dir / "new", {dir / "nothing"}, false); }),
            "<no error>");
}

TEST(OutputFiles, AnExistingOutputNeedsOverwrite) {
  TempDir dir;
  write_file(dir / "old", "old");
  EXPECT_EQ(error_of([&] { check_output("--out", dir / "old", {}, false); }),
            "--out " + (dir / "old") + ": exists; pass --overwrite to replace it");
  EXPECT_EQ(error_of([&] { check_output("--out", dir / "old", {}, true); }), "<no error>");
  EXPECT_EQ(read_file(dir / "old"), "old");  // checking writes nothing
}

TEST(OutputFiles, ADirectoryWithOtherFilesIsNeverReplaced) {
  TempDir dir;
  fs::create_directory(dir / "ckpt");
  write_file(dir / "ckpt/manifest.json", "{}");
  write_file(dir / "ckpt/tensors.bin", "");
  EXPECT_THAT(error_of([&] { check_output("--out", dir / "ckpt", {}, false); }),
              testing::HasSubstr("exists; pass --overwrite"));
  EXPECT_EQ(error_of([&] { check_output("--out", dir / "ckpt", {}, true); }), "<no error>");
  write_file(dir / "ckpt/notes.txt", "mine");
  EXPECT_EQ(error_of([&] { check_output("--out", dir / "ckpt", {}, true); }),
            "--out " + (dir / "ckpt") +
                ": is a directory holding notes.txt, not only a checkpoint; strata never "
                "removes a directory, write elsewhere");
}

TEST(OutputFiles, WriteFileAtomicallyReplacesAndLeavesNoTemporary) {
  TempDir dir;
  write_file(dir / "f", "old contents");
  write_file_atomically(dir / "f", "new");
  EXPECT_EQ(read_file(dir / "f"), "new");
  // A target that cannot be renamed over (a non-empty directory) keeps no temporary file.
  fs::create_directories(dir / "d/x");
  EXPECT_THAT(error_of([&] { write_file_atomically(dir / "d", "data"); }),
              testing::HasSubstr(": cannot write ("));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  EXPECT_TRUE(fs::exists(dir / "d/x"));
}

TEST(OutputFiles, CheckWritableSaysWhyAPathCannotBeWrittenAndLeavesNothing) {
  TempDir dir;
  write_file(dir / "file", "x");
  fs::create_directory(dir / "d");
  // Writable: a new file, a file under directories the writer creates, an existing
  // directory for a checkpoint folder, and no path at all.
  for (const std::string& ok : {dir / "new.json", dir / "a/b/new.json", dir / "file"}) {
    EXPECT_EQ(error_of([&] { check_writable("--metrics-out", ok); }), "<no error>") << ok;
  }
  EXPECT_EQ(error_of([&] { check_writable("--checkpoint-dir", dir / "d", OutputKind::Directory); }),
            "<no error>");
  EXPECT_EQ(error_of([&] {
              check_writable("--checkpoint-dir", dir / "new/ckpt", OutputKind::Directory);
            }),
            "<no error>");
  EXPECT_EQ(error_of([&] { check_writable("--trace-out", ""); }), "<no error>");

  EXPECT_EQ(error_of([&] { check_writable("--metrics-out", dir / "d"); }),
            "--metrics-out " + (dir / "d") + ": is a directory, expected a file name");
  EXPECT_EQ(
      error_of([&] { check_writable("--checkpoint-dir", dir / "file", OutputKind::Directory); }),
      "--checkpoint-dir " + (dir / "file") + ": is not a directory (a file is there)");
  EXPECT_EQ(
      error_of(
          [&] { check_writable("--checkpoint-dir", dir / "file/ckpt", OutputKind::Directory); }),
      "--checkpoint-dir " + (dir / "file/ckpt") + ": " + (dir / "file") + " is not a directory");
  EXPECT_EQ(
      error_of([&] {
        check_writable("--hang-report", dir / "missing/h.json", OutputKind::File,
                       /*creates_parents=*/false);
      }),
      "--hang-report " + (dir / "missing/h.json") + ": no such directory " + (dir / "missing"));
  // Root passes every permission bit; /proc still takes no new files.
  EXPECT_EQ(error_of([&] { check_writable("--trace-out", "/proc/x.json"); }),
            "--trace-out /proc/x.json: directory /proc is not writable (it takes no new files)");
  EXPECT_THAT(error_of([&] { check_writable("--out", "/proc/strata/x/y.json"); }),
              testing::HasSubstr("directory /proc is not writable"));

  // The checks created nothing and removed nothing.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path()))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"d", "file"}));
  EXPECT_TRUE(fs::is_empty(dir / "d"));
}
