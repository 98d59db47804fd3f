// check_output and write_file_atomically: an output never replaces an input, an existing
// output needs --overwrite, a directory with other files in it is never replaced.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "strata/core/output_files.h"
#include "test_util.h"

using strata::core::check_output;
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
