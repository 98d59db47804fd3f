// The heartbeat watchdog, with ranks as watchdogs of one process sharing a control store:
// it detects an entry in progress past the timeout and a rank that stops beating, agrees
// on one diagnosis, reports every rank, and stays quiet while the job is healthy.
#include <gtest/gtest.h>

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

TEST(Watchdog, RejectsBadOptions) {
  ControlStoreServer server;
  EXPECT_THROW(Watchdog(client(server), 2, 2), strata::Error);
  EXPECT_THROW(
      Watchdog(client(server), 0, 1, WatchdogOptions().timeout(100ms).heartbeat_interval(200ms)),
      strata::Error);
  EXPECT_THROW(Watchdog(nullptr, 0, 1), strata::Error);
}

}  // namespace
