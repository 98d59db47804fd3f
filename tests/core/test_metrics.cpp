#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "strata/core/metrics.h"
#include "test_util.h"

using strata::core::MetricsWriter;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::istringstream in(strata::test::read_file(path));
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST(Metrics, AppearsUnderItsNameOnlyWhenFinal) {
  TempDir dir;
  const std::string path = dir / "run/metrics.jsonl";  // the parent is created
  MetricsWriter metrics(path);
  EXPECT_TRUE(metrics.enabled());
  metrics.write({{"step", 1}, {"loss", 2.5}});
  metrics.write({{"step", 2}, {"loss", 1.25}});
  EXPECT_FALSE(fs::exists(path));
  // Each line is flushed as written.
  EXPECT_EQ(read_lines(path + ".tmp").size(), 2u);

  metrics.write_final({{"accuracy", 0.875}});
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1]["loss"], 1.25);
  EXPECT_EQ(lines[2]["event"], "final");
  EXPECT_EQ(lines[2]["accuracy"], 0.875);
  EXPECT_THAT(error_of([&] {
                metrics.write({{"step", 3}});
              }),
              HasSubstr("write after write_final"));
}

TEST(Metrics, DestructorRenames) {
  TempDir dir;
  {
    MetricsWriter metrics(dir / "m.jsonl");
    metrics.write({{"step", 1}});
  }
  EXPECT_EQ(read_lines(dir / "m.jsonl").size(), 1u);
  EXPECT_FALSE(fs::exists(dir / "m.jsonl.tmp"));
}

TEST(Metrics, DisabledWithEmptyPath) {
  MetricsWriter metrics("");
  EXPECT_FALSE(metrics.enabled());
  metrics.write({{"step", 1}});
  metrics.write_final({});
}

TEST(Metrics, UnwritablePathIsAnError) {
  TempDir dir;
  strata::test::write_file(dir / "file", "x");
  EXPECT_THAT(error_of([&] { MetricsWriter metrics(dir / "file/metrics.jsonl"); }),
              HasSubstr("metrics file " + dir / "file/metrics.jsonl.tmp: cannot create"));
}

TEST(Metrics, AFailedRenameLeavesNoTemporaryFile) {
  TempDir dir;
  // A non-empty directory under the metrics file's name: the final rename fails.
  fs::create_directories(dir / "m.jsonl/x");
  MetricsWriter metrics(dir / "m.jsonl");
  metrics.write({{"step", 1}});
  EXPECT_THAT(error_of([&] { metrics.write_final({}); }),
              HasSubstr("metrics file " + dir / "m.jsonl: cannot rename"));
  EXPECT_FALSE(fs::exists(dir / "m.jsonl.tmp"));
  EXPECT_TRUE(fs::exists(dir / "m.jsonl/x"));
}
