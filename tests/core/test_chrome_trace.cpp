#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "strata/core/chrome_trace.h"
#include "test_util.h"

using nlohmann::json;
using strata::core::ChromeTrace;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

// Two stages of a pipeline, one row each, as the executor records them.
ChromeTrace two_stage_trace() {
  ChromeTrace trace;
  trace.set_process_name(0, "pipeline");
  trace.set_thread_name(0, 0, "stage 0");
  trace.set_thread_name(0, 1, "stage 1");
  trace.add_complete("forward", "compute", 0, 0, 0.0, 100.0, {{"microbatch", 0}});
  trace.add_complete("send activation", "comm", 0, 0, 100.0, 2.5);
  trace.add_complete("forward", "compute", 0, 1, 102.5, 100.0, {{"microbatch", 0}});
  return trace;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST(ChromeTrace, CompleteEventsInTraceEventFormat) {
  const json j = two_stage_trace().to_json();
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["displayTimeUnit"], "ms");
  const json& events = j["traceEvents"];
  ASSERT_TRUE(events.is_array());
  ASSERT_EQ(events.size(), 6u);  // 3 metadata, then 3 complete events in order added
  EXPECT_EQ(events[3], json({{"name", "forward"},
                             {"cat", "compute"},
                             {"ph", "X"},
                             {"pid", 0},
                             {"tid", 0},
                             {"ts", 0.0},
                             {"dur", 100.0},
                             {"args", {{"microbatch", 0}}}}));
  // No args: an empty object, which the viewers expect rather than null.
  EXPECT_EQ(events[4]["name"], "send activation");
  EXPECT_EQ(events[4]["cat"], "comm");
  EXPECT_EQ(events[4]["ts"], 100.0);
  EXPECT_EQ(events[4]["dur"], 2.5);
  EXPECT_EQ(events[4]["args"], json::object());
  EXPECT_EQ(events[5]["tid"], 1);
  EXPECT_EQ(events[5]["ts"], 102.5);
}

TEST(ChromeTrace, MetadataNamesRowsFirst) {
  ChromeTrace trace = two_stage_trace();
  trace.set_thread_name(0, 1, "stage 1 (renamed)");  // naming again renames
  trace.set_process_name(3, "rank 3");
  const json events = trace.to_json()["traceEvents"];
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[0], json({{"name", "process_name"},
                             {"ph", "M"},
                             {"pid", 0},
                             {"tid", 0},
                             {"args", {{"name", "pipeline"}}}}));
  EXPECT_EQ(events[1]["name"], "process_name");
  EXPECT_EQ(events[1]["pid"], 3);
  EXPECT_EQ(events[1]["args"]["name"], "rank 3");
  EXPECT_EQ(events[2], json({{"name", "thread_name"},
                             {"ph", "M"},
                             {"pid", 0},
                             {"tid", 0},
                             {"args", {{"name", "stage 0"}}}}));
  EXPECT_EQ(events[3]["name"], "thread_name");
  EXPECT_EQ(events[3]["tid"], 1);
  EXPECT_EQ(events[3]["args"]["name"], "stage 1 (renamed)");
  EXPECT_EQ(events[4]["ph"], "X");
}

TEST(ChromeTrace, EmptyTraceIsValid) {
  ChromeTrace trace;
  EXPECT_TRUE(trace.empty());
  EXPECT_EQ(trace.to_json(), json({{"traceEvents", json::array()}, {"displayTimeUnit", "ms"}}));
}

TEST(ChromeTrace, RefusesBadEvents) {
  ChromeTrace trace;
  EXPECT_THAT(error_of([&] { trace.add_complete("f", "c", 0, 0, 0, -1); }),
              HasSubstr("chrome trace event 'f': duration -1 us, expected a finite time >= 0"));
  EXPECT_THAT(error_of([&] {
                trace.add_complete("f", "c", 0, 0, std::numeric_limits<double>::quiet_NaN(), 1);
              }),
              HasSubstr("chrome trace event 'f': start nan us, expected a finite time"));
  EXPECT_THAT(error_of([&] { trace.add_complete("f", "c", 0, 0, 0, 1, json::array({1})); }),
              HasSubstr("chrome trace event 'f': args [1], expected a JSON object"));
  EXPECT_TRUE(trace.empty());
  trace.add_complete("zero", "c", 0, 0, -5.0, 0.0);  // zero length and times before 0 are fine
  EXPECT_EQ(trace.size(), 1u);
}

TEST(ChromeTrace, MergeConcatenatesEventsAndUnitesNames) {
  // One trace per rank, as rank 0 would gather them.
  std::vector<ChromeTrace> ranks(2);
  for (int r = 0; r < 2; ++r) {
    ranks[r].set_process_name(r, "rank " + std::to_string(r));
    ranks[r].set_thread_name(r, 0, "compute");
    ranks[r].set_process_name(9, "shared");  // same name in both: fine
    ranks[r].add_complete("step", "compute", r, 0, 10.0 * r, 5.0, {{"rank", r}});
  }
  const ChromeTrace merged = ChromeTrace::merge(ranks);
  EXPECT_EQ(merged.size(), 2u);
  const json events = merged.to_json()["traceEvents"];
  ASSERT_EQ(events.size(), 7u);  // 3 process names, 2 thread names, 2 events
  EXPECT_EQ(events[0]["args"]["name"], "rank 0");
  EXPECT_EQ(events[1]["args"]["name"], "rank 1");
  EXPECT_EQ(events[2]["args"]["name"], "shared");
  EXPECT_EQ(events[3]["pid"], 0);
  EXPECT_EQ(events[4]["pid"], 1);
  EXPECT_EQ(events[5]["args"]["rank"], 0);
  EXPECT_EQ(events[6]["args"]["rank"], 1);
  EXPECT_EQ(events[6]["ts"], 10.0);
  EXPECT_TRUE(ChromeTrace::merge({}).empty());

  ranks[1].set_thread_name(0, 0, "other");
  EXPECT_THAT(error_of([&] { ChromeTrace::merge(ranks); }),
              HasSubstr("chrome trace merge: thread 0 of process 0 is named 'compute' in one "
                        "trace and 'other' in another"));
  ranks[1].set_process_name(9, "not shared");
  EXPECT_THAT(error_of([&] { ChromeTrace::merge(ranks); }),
              HasSubstr("process 9 is named 'shared' in one trace and 'not shared'"));
}

TEST(ChromeTrace, FromJsonInvertsToJson) {
  ChromeTrace trace;
  trace.set_process_name(1, "rank 1");
  trace.set_thread_name(1, 2, "stage 2");
  trace.add_complete("forward", "compute", 1, 2, 12.5, 300.0, {{"micro_batch", 3}});
  trace.add_complete("W", "compute", 1, 2, 400.0, 0.0);
  const json text = json::parse(trace.to_json().dump());
  EXPECT_EQ(ChromeTrace::from_json(text).to_json(), trace.to_json());
  EXPECT_TRUE(ChromeTrace::from_json(ChromeTrace().to_json()).empty());

  EXPECT_THAT(error_of([] { ChromeTrace::from_json(json::array()); }),
              HasSubstr("expected an object with a traceEvents array"));
  const json bad = {{"traceEvents", {{{"ph", "X"}, {"name", "f"}, {"pid", 0}}}}};
  EXPECT_THAT(error_of([&] { ChromeTrace::from_json(bad); }),
              HasSubstr("chrome trace: cannot read event 0"));
}

TEST(ChromeTrace, WriteReplacesTheFileWhole) {
  TempDir dir;
  const std::string path = dir / "traces/run.json";  // the parent is created
  const ChromeTrace trace = two_stage_trace();
  trace.write(path);
  EXPECT_EQ(json::parse(strata::test::read_file(path)), trace.to_json());

  // An older, longer file is replaced, not overwritten in place; no temporary is left.
  strata::test::write_file(path, std::string(100000, 'x'));
  ChromeTrace small;
  small.add_complete("only", "c", 1, 2, 3.0, 4.0);
  small.write(path);
  const json written = json::parse(strata::test::read_file(path));
  EXPECT_EQ(written, small.to_json());
  EXPECT_EQ(written["traceEvents"][0]["name"], "only");
  EXPECT_EQ(files_in(dir / "traces"), std::vector<std::string>{"run.json"});
}

TEST(ChromeTrace, UnwritablePathIsAClearError) {
  TempDir dir;
  strata::test::write_file(dir / "file", "not a directory");
  const ChromeTrace trace = two_stage_trace();
  const std::string below_file = dir / "file/trace.json";
  EXPECT_THAT(error_of([&] { trace.write(below_file); }),
              HasSubstr("chrome trace " + below_file + ": cannot create " + below_file + ".tmp-"));

  // The rename fails (a non-empty directory is in the way): the error names it, and the
  // temporary file is cleaned up.
  const std::string occupied = dir / "occupied";
  fs::create_directories(occupied + "/inside");
  EXPECT_THAT(error_of([&] { trace.write(occupied); }),
              HasSubstr("chrome trace " + occupied + ": cannot rename " + occupied + ".tmp-"));
  EXPECT_EQ(files_in(dir.path()), (std::vector<std::string>{"file", "occupied"}));

  EXPECT_THAT(error_of([&] { trace.write(""); }), HasSubstr("chrome trace: got an empty path"));
}
