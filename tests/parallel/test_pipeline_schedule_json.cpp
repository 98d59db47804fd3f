// Schedules survive the JSON form unchanged, and malformed JSON names the field at fault.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule_json.h"

namespace {

using strata::parallel::make_pipeline_schedule;
using strata::parallel::schedule_from_json;
using strata::parallel::schedule_to_json;

TEST(PipelineScheduleJson, RoundTripsEveryGenerator) {
  for (const auto& [name, v] : std::vector<std::pair<std::string, int>>{
           {"gpipe", 1}, {"1f1b", 1}, {"zb-h1", 1}, {"interleaved", 2}}) {
    const auto schedule = make_pipeline_schedule(name, 4, 8, v);
    const auto back = schedule_from_json(nlohmann::json::parse(schedule_to_json(schedule).dump()));
    EXPECT_EQ(back.name, schedule.name);
    EXPECT_EQ(back.num_ranks, schedule.num_ranks);
    EXPECT_EQ(back.num_stages, schedule.num_stages);
    EXPECT_EQ(back.num_micro_batches, schedule.num_micro_batches);
    EXPECT_EQ(back.ranks, schedule.ranks) << name;
  }
}

std::string error_of(const nlohmann::json& json) {
  try {
    schedule_from_json(json);
  } catch (const strata::Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(PipelineScheduleJson, NamesTheFieldAtFault) {
  using testing::HasSubstr;
  EXPECT_THAT(error_of(nlohmann::json::array()),
              HasSubstr("pipeline schedule: got an array, expected an object"));
  EXPECT_THAT(error_of({{"num_ranks", 1}}), HasSubstr("missing field 'num_stages'"));
  const nlohmann::json header = {{"num_ranks", 1}, {"num_stages", 1}, {"num_micro_batches", 1}};
  auto with_ranks = [&](nlohmann::json ranks) {
    auto json = header;
    json["ranks"] = std::move(ranks);
    return json;
  };
  EXPECT_THAT(error_of(header), HasSubstr("missing field 'ranks', expected an array"));
  EXPECT_THAT(error_of(with_ranks({1})), HasSubstr("field 'ranks[0]': got 1, expected an array"));
  EXPECT_THAT(error_of(with_ranks({{{{"op", "F"}, {"stage", "zero"}}}})),
              HasSubstr("field 'ranks[0][0].stage': got \"zero\", expected an integer"));
  EXPECT_THAT(error_of(with_ranks({{{{"op", "X"}}}})),
              HasSubstr("field 'ranks[0][0].op': unknown op 'X'"));
  // Integers are read whole and range-checked, not cut to 32 bits.
  auto with = [&](const char* key, nlohmann::json value) {
    auto json = with_ranks({{{{"op", "F"}, {"stage", 0}, {"mb", 0}}}});
    json[key] = std::move(value);
    return json;
  };
  EXPECT_EQ(error_of(with("num_micro_batches", 4294967297LL)),
            "pipeline schedule: field 'num_micro_batches': got 4294967297, expected an integer "
            "from 1 to 2147483647");
  EXPECT_EQ(error_of(with("num_ranks", 1.5)),
            "pipeline schedule: field 'num_ranks': got 1.5, expected an integer from 1 to "
            "2147483647");
  EXPECT_EQ(error_of(with("num_stages", 0)),
            "pipeline schedule: field 'num_stages': got 0, expected an integer from 1 to "
            "2147483647");
  EXPECT_EQ(error_of(with_ranks({{{{"op", "F"}, {"mb", -3}}}})),
            "pipeline schedule: field 'ranks[0][0].mb': got -3, expected an integer from 0 to "
            "2147483647");
  EXPECT_EQ(
      error_of(with_ranks({{{{"op", "F"}, {"peer", std::numeric_limits<double>::quiet_NaN()}}}})),
      "pipeline schedule: field 'ranks[0][0].peer': got nan, expected an integer from 0 to "
      "2147483647");
}

}  // namespace
