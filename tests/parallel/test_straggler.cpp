// The straggler report: the step profile splits a step into busy and blocked time, and the
// detector names the rank whose busy time stands out, and where its extra time goes.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "strata/core/step_profile.h"
#include "strata/parallel/control/straggler.h"

namespace strata::parallel {
namespace {

using nlohmann::json;

json profile(double busy, json by_kind, int64_t steps = 20) {
  return {{"steps", steps},    {"wall_s", busy + 0.01},         {"busy_s", busy},
          {"blocked_s", 0.01}, {"by_kind", std::move(by_kind)}, {"host", "h"},
          {"node", 0}};
}

TEST(StepProfile, SplitsAStepIntoBusyAndBlockedTimeAndSumsKinds) {
  core::FlightRecorder recorder;
  core::StepProfile steps(4, recorder);
  for (int s = 0; s < 3; ++s) {
    steps.begin_step();
    {
      core::FlightRecordScope forward("forward of a batch", -1, "forward", recorder);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    recorder.add_blocked(0.010);  // as if a wait() had blocked 10 ms
    steps.end_step();
  }
  const json summary = steps.summary();
  EXPECT_EQ(summary["steps"].get<int64_t>(), 3);
  EXPECT_NEAR(summary["blocked_s"].get<double>(), 0.010, 1e-9);
  EXPECT_NEAR(summary["busy_s"].get<double>(),
              summary["wall_s"].get<double>() - summary["blocked_s"].get<double>(), 1e-12);
  EXPECT_GE(summary["by_kind"]["forward"].get<double>(), 0.020);
  EXPECT_LT(summary["by_kind"]["forward"].get<double>(), summary["wall_s"].get<double>());
  // The window keeps the last 4 steps.
  for (int s = 0; s < 3; ++s) {
    steps.begin_step();
    steps.end_step();
  }
  EXPECT_EQ(steps.summary()["steps"].get<int64_t>(), 4);
}

TEST(Straggler, NamesTheSlowRankAndTheKindWhereItsExtraTimeGoes) {
  const json normal = {{"forward", 0.010}, {"backward", 0.020}};
  const json slow_forward = {{"forward", 0.040}, {"backward", 0.021}};
  const auto found =
      find_straggler({profile(0.030, normal), profile(0.061, slow_forward), profile(0.031, normal)},
                     StragglerOptions());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->rank, 1);
  EXPECT_EQ(found->where, "forward");
  EXPECT_NEAR(found->where_excess_s, 0.030, 1e-9);
  EXPECT_NEAR(found->others_busy_s, 0.0305, 1e-9);
  EXPECT_NEAR(found->ratio(), 0.061 / 0.0305, 1e-9);
  EXPECT_NE(found->line().find("rank 1 (node 0, host h) is a straggler"), std::string::npos)
      << found->line();
  EXPECT_EQ(found->to_json()["event"], "straggler");
}

TEST(Straggler, ExtraTimeOutsideEveryRecordedKindIsSaidSo) {
  const json kinds = {{"forward", 0.010}};
  const auto found =
      find_straggler({profile(0.012, kinds), profile(0.050, kinds)}, StragglerOptions());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->rank, 1);
  EXPECT_NE(found->where.find("outside recorded operations"), std::string::npos);
  EXPECT_NEAR(found->where_excess_s, 0.038, 1e-9);
}

TEST(Straggler, NoReportBelowTheThresholdWithTooFewStepsOrForAnotherStage) {
  const json kinds = {{"forward", 0.010}};
  // 1.4x < 1 + 0.5.
  EXPECT_FALSE(find_straggler({profile(0.010, kinds), profile(0.014, kinds)}, StragglerOptions()));
  // Too few steps on the slow rank to judge.
  EXPECT_FALSE(
      find_straggler({profile(0.010, kinds), profile(0.050, kinds, 3)}, StragglerOptions()));
  // Slower by far, but by less than min_excess.
  EXPECT_FALSE(
      find_straggler({profile(0.0001, kinds), profile(0.0009, kinds)}, StragglerOptions()));
  // Threshold 0: off.
  EXPECT_FALSE(find_straggler({profile(0.010, kinds), profile(0.050, kinds)},
                              StragglerOptions().threshold(0)));
  // Pipeline stages differ in cost by design: stage 1 is not compared with stage 0 ...
  const json stage0 = {{"F stage 0", 0.010}}, stage1 = {{"F stage 1", 0.040}};
  EXPECT_FALSE(
      find_straggler({profile(0.010, stage0), profile(0.040, stage1)}, StragglerOptions()));
  // ... but with its own data-parallel replica.
  const auto found = find_straggler({profile(0.010, stage0), profile(0.040, stage1),
                                     profile(0.011, stage0), profile(0.100, {{"F stage 1", 0.1}})},
                                    StragglerOptions());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->rank, 3);
  EXPECT_EQ(found->where, "F stage 1");
}

TEST(StragglerDetector, ReportsOnceAfterConfirmationsAndAgainAfterRecovery) {
  const json kinds = {{"forward", 0.010}};
  const std::vector<json> slow = {profile(0.010, kinds), profile(0.050, kinds)};
  const std::vector<json> even = {profile(0.010, kinds), profile(0.011, kinds)};
  StragglerDetector detector(StragglerOptions().confirmations(3));
  EXPECT_FALSE(detector.observe(slow));
  EXPECT_FALSE(detector.observe(slow));
  EXPECT_TRUE(detector.observe(slow));   // the third check in a row
  EXPECT_FALSE(detector.observe(slow));  // reported already
  EXPECT_FALSE(detector.observe(even));
  EXPECT_FALSE(detector.observe(slow));  // one even check is not a recovery
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(detector.observe(even));
  EXPECT_FALSE(detector.observe(slow));
  EXPECT_FALSE(detector.observe(slow));
  EXPECT_TRUE(detector.observe(slow));  // a new episode
}

}  // namespace
}  // namespace strata::parallel
