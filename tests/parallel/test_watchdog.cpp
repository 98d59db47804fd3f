// The heartbeat watchdog, with ranks as watchdogs of one process sharing a control store:
// it detects an entry in progress past the timeout and a rank that stops beating, agrees
// on one diagnosis, reports every rank, and stays quiet while the job is healthy; one rank's
// error (post_error_abort) releases the others at once, printed by one rank, with no report.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "strata/core/error.h"
#include "strata/parallel/control/control_store.h"
#include "strata/parallel/control/watchdog.h"

namespace {

using namespace std::chrono_literals;
using strata::core::FlightRecorder;
using strata::parallel::ControlStoreClient;
using strata::parallel::ControlStoreServer;
using strata::parallel::Watchdog;
using strata::parallel::WatchdogAbort;
using strata::parallel::WatchdogOptions;

using Clock = std::chrono::steady_clock;

// Collects the abort of one watchdog.
struct AbortCatcher {
  std::promise<WatchdogAbort> promise;
  std::future<WatchdogAbort> future = promise.get_future();
  Clock::time_point when;
  WatchdogOptions options(std::chrono::milliseconds timeout = 1000ms) {
    return WatchdogOptions().timeout(timeout).heartbeat_interval(100ms).on_abort(
        [this](const WatchdogAbort& a) {
          when = Clock::now();
          promise.set_value(a);
        });
  }
};

std::shared_ptr<ControlStoreClient> client(const ControlStoreServer& server) {
  return std::make_shared<ControlStoreClient>(server.address());
}

TEST(Watchdog, AbortsEveryRankWhenOneWaitsPastTheTimeout) {
  ControlStoreServer server;
  FlightRecorder recorders[2] = {FlightRecorder(16), FlightRecorder(16)};
  recorders[0].end(recorders[0].begin("forward stage 0 micro-batch 0"));
  recorders[0].begin("barrier over world of 2");
  recorders[1].end(recorders[1].begin("forward stage 1 micro-batch 0"));
  recorders[1].begin("recv from rank 0 tag 7 (16 bytes)", 0);
  const auto start = Clock::now();
  AbortCatcher caught[2];
  Watchdog rank0(client(server), 0, 2, caught[0].options(), recorders[0]);
  Watchdog rank1(client(server), 1, 2, caught[1].options(), recorders[1]);
  ASSERT_EQ(caught[0].future.wait_for(5s), std::future_status::ready);
  ASSERT_EQ(caught[1].future.wait_for(5s), std::future_status::ready);
  const WatchdogAbort a0 = caught[0].future.get(), a1 = caught[1].future.get();
  // Within the timeout plus a few heartbeats, not before the timeout.
  for (const auto& c : caught) {
    const double after = std::chrono::duration<double>(c.when - start).count();
    EXPECT_GE(after, 1.0);
    EXPECT_LT(after, 2.0);
  }
  EXPECT_TRUE(rank0.aborted());
  EXPECT_TRUE(rank1.aborted());
  // One diagnosis, made by one rank, followed by the other.
  EXPECT_EQ(a0.reason, a1.reason);
  EXPECT_NE(a0.detected_here, a1.detected_here);
  EXPECT_EQ(
      a0.reason.rfind("rank 1 waits for rank 0 in \"recv from rank 0 tag 7 (16 bytes)\" for ", 0),
      0u)
      << a0.reason;
  EXPECT_NE(a0.reason.find("(timeout 1.0 s)"), std::string::npos) << a0.reason;
  const WatchdogAbort& detected = a0.detected_here ? a0 : a1;
  const auto& ranks = detected.report["ranks"];
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[0]["recorder"]["in_progress"][0]["what"], "barrier over world of 2");
  EXPECT_EQ(ranks[1]["recorder"]["in_progress"][0]["what"], "recv from rank 0 tag 7 (16 bytes)");
  EXPECT_EQ(ranks[1]["recorder"]["finished"][0]["what"], "forward stage 1 micro-batch 0");
  EXPECT_LT(ranks[0]["last_heartbeat_s_ago"].get<double>(), 0.5);
  const std::string text = strata::parallel::format_hang_report(detected.report);
  EXPECT_NE(text.find("strata watchdog: job aborted: rank 1 waits for rank 0"), std::string::npos)
      << text;
  EXPECT_NE(text.find("rank 1: last heartbeat"), std::string::npos) << text;
  EXPECT_NE(text.find("in progress #2 recv from rank 0 tag 7 (16 bytes), for "), std::string::npos)
      << text;
  EXPECT_NE(text.find(": waits for rank 0"), std::string::npos) << text;
  EXPECT_NE(text.find("finished    #1 forward stage 0 micro-batch 0"), std::string::npos) << text;
  // The store holds the verdict for anyone who looks later.
  ControlStoreClient store(server.address());
  EXPECT_EQ(store.get("abort"), a0.reason);
  EXPECT_TRUE(store.check({"abort/report"}));
}

TEST(Watchdog, AbortsWhenARankStopsBeating) {
  ControlStoreServer server;
  FlightRecorder recorder(16);
  AbortCatcher caught;
  // Rank 1 beats once, then falls silent (a stopped or frozen process).
  ControlStoreClient rank1(server.address());
  rank1.set("heartbeat/1", "1");
  const auto start = Clock::now();
  Watchdog rank0(client(server), 0, 2, caught.options(800ms), recorder);
  ASSERT_EQ(caught.future.wait_for(5s), std::future_status::ready);
  const WatchdogAbort a = caught.future.get();
  const double after = std::chrono::duration<double>(caught.when - start).count();
  EXPECT_GE(after, 0.8);
  EXPECT_LT(after, 1.6);
  EXPECT_TRUE(a.detected_here);
  EXPECT_EQ(a.reason.rfind("rank 1 sent no heartbeat for ", 0), 0u) << a.reason;
  EXPECT_TRUE(a.report["ranks"][1]["last_heartbeat_s_ago"].get<double>() > 0.8);
}

TEST(Watchdog, StaysQuietWhileRanksProgressAndAfterOneFinishes) {
  ControlStoreServer server;
  FlightRecorder recorders[2] = {FlightRecorder(16), FlightRecorder(16)};
  AbortCatcher caught[2];
  auto rank0 =
      std::make_unique<Watchdog>(client(server), 0, 2, caught[0].options(500ms), recorders[0]);
  auto rank1 =
      std::make_unique<Watchdog>(client(server), 1, 2, caught[1].options(500ms), recorders[1]);
  // Short operations for longer than the timeout in all.
  for (int i = 0; i < 12; ++i) {
    for (auto& r : recorders) {
      const uint64_t s = r.begin("step " + std::to_string(i));
      std::this_thread::sleep_for(40ms);
      r.end(s);
    }
  }
  // Rank 1 is done; rank 0 goes on alone for longer than the timeout.
  rank1->stop();
  std::this_thread::sleep_for(900ms);
  EXPECT_EQ(caught[0].future.wait_for(0ms), std::future_status::timeout);
  EXPECT_EQ(caught[1].future.wait_for(0ms), std::future_status::timeout);
  EXPECT_FALSE(rank0->aborted());
  rank0->stop();
  ControlStoreClient store(server.address());
  EXPECT_EQ(store.get("heartbeat/0"), "done");
  EXPECT_EQ(store.get("heartbeat/1"), "done");
  EXPECT_FALSE(store.check({"abort"}));
  EXPECT_TRUE(store.check({"recorder/0", "recorder/1"}));
}

TEST(Watchdog, AbortsWhenTheStoreIsLost) {
  auto server = std::make_unique<ControlStoreServer>();
  FlightRecorder recorder(16);
  AbortCatcher caught;
  Watchdog rank0(client(*server), 0, 1, caught.options(5000ms), recorder);
  std::this_thread::sleep_for(250ms);
  server.reset();
  ASSERT_EQ(caught.future.wait_for(3s), std::future_status::ready);
  const WatchdogAbort a = caught.future.get();
  EXPECT_EQ(a.reason.rfind("rank 0 lost the control store (control store 127.0.0.1:", 0), 0u)
      << a.reason;
}

TEST(Watchdog, OneRanksErrorReleasesTheOthersAtOnceWithoutAReport) {
  ControlStoreServer server;
  FlightRecorder recorders[3] = {FlightRecorder(16), FlightRecorder(16), FlightRecorder(16)};
  // Ranks 1 and 2 wait for rank 0, which fails; the timeout is far away.
  recorders[1].begin("recv from rank 0 tag 7 (16 bytes)", 0);
  recorders[2].begin("barrier over world of 3");
  AbortCatcher caught[3];
  std::vector<std::unique_ptr<Watchdog>> ranks;
  for (int r = 0; r < 3; ++r)
    ranks.push_back(
        std::make_unique<Watchdog>(client(server), r, 3, caught[r].options(60s), recorders[r]));
  std::this_thread::sleep_for(300ms);
  // Rank 0 fails: its watchdog stops (end_job_after_error), it posts the error; rank 2
  // fails with the same error at the same moment.
  ranks[0]->stop();
  std::atomic<int> announced{0};
  const std::string line = "error: --trace-out /proc/x.json: directory /proc is not writable";
  auto post = [&](int rank) {
    ControlStoreClient store(server.address());
    return strata::parallel::post_error_abort(store, rank, line, [&] { ++announced; });
  };
  const auto start = Clock::now();
  auto first = std::async(std::launch::async, post, 0);
  auto second = std::async(std::launch::async, post, 2);
  const bool won0 = first.get(), won2 = second.get();
  // One rank speaks for the job, once.
  EXPECT_NE(won0, won2);
  EXPECT_EQ(announced.load(), 1);
  // Rank 1 is released within a heartbeat or two, not at the timeout, knowing it was an error.
  ASSERT_EQ(caught[1].future.wait_for(2s), std::future_status::ready);
  const WatchdogAbort a = caught[1].future.get();
  EXPECT_LT(std::chrono::duration<double>(caught[1].when - start).count(), 1.0);
  EXPECT_TRUE(a.error);
  EXPECT_FALSE(a.detected_here);
  EXPECT_EQ(a.reason, line);
  EXPECT_FALSE(a.report.contains("ranks"));  // nothing hung: no report
  EXPECT_TRUE(ranks[1]->aborted());
  // A rank that fails later stays silent too.
  EXPECT_FALSE(post(1));
  EXPECT_EQ(announced.load(), 1);
  ControlStoreClient store(server.address());
  EXPECT_TRUE(strata::parallel::error_abort_posted(store));
  // The posting rank took part; rank 1 (whose watchdog only reported, in this test) did not.
  EXPECT_TRUE(strata::parallel::error_abort_posted(store, won0 ? 0 : 2));
  EXPECT_FALSE(strata::parallel::error_abort_posted(store, 1));
}

TEST(Watchdog, TheStoreHostStaysUntilTheRanksHaveLeftAnErrorAbort) {
  ControlStoreServer server;
  ControlStoreClient host(server.address()), other(server.address());
  EXPECT_FALSE(strata::parallel::error_abort_posted(host));
  // The two other ranks leave after 200 ms; the host waits for them, not for its deadline.
  auto others = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(200ms);
    strata::parallel::leave_after_error_abort(other, 1, 3, /*wait=*/false, 100ms);
    strata::parallel::leave_after_error_abort(other, 2, 3, /*wait=*/false, 100ms);
  });
  auto start = Clock::now();
  strata::parallel::leave_after_error_abort(host, 0, 3, /*wait=*/true, 100ms);
  double waited = std::chrono::duration<double>(Clock::now() - start).count();
  others.get();
  EXPECT_GE(waited, 0.15);
  EXPECT_LT(waited, 0.8);
  // A rank that never leaves (no watchdog) holds the host for 5 heartbeats, at least 1 s.
  ControlStoreServer server2;
  ControlStoreClient host2(server2.address());
  start = Clock::now();
  strata::parallel::leave_after_error_abort(host2, 0, 2, /*wait=*/true, 100ms);
  waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_GE(waited, 0.95);
  EXPECT_LT(waited, 2.0);
}

TEST(Watchdog, RejectsBadOptions) {
  ControlStoreServer server;
  EXPECT_THROW(Watchdog(client(server), 2, 2), strata::Error);
  EXPECT_THROW(
      Watchdog(client(server), 0, 1, WatchdogOptions().timeout(100ms).heartbeat_interval(200ms)),
      strata::Error);
  EXPECT_THROW(Watchdog(nullptr, 0, 1), strata::Error);
}

}  // namespace
