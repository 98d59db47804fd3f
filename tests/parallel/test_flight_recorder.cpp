// The flight recorder (ring order, overwrite, entries in progress kept, summary) and the
// recording communicator that feeds it.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "strata/core/error.h"
#include "strata/core/flight_recorder.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/comm/recording_communicator.h"

namespace {

using strata::core::FlightRecord;
using strata::core::FlightRecorder;
using strata::core::FlightRecordScope;

std::vector<uint64_t> sequences(const std::vector<FlightRecord>& records) {
  std::vector<uint64_t> out;
  for (const auto& r : records) out.push_back(r.sequence);
  return out;
}

TEST(FlightRecorder, KeepsTheLastCapacityFinishedEntriesInOrder) {
  FlightRecorder recorder(4);
  for (int i = 0; i < 10; ++i) recorder.end(recorder.begin("op " + std::to_string(i)));
  const auto finished = recorder.finished();
  EXPECT_EQ(sequences(finished), (std::vector<uint64_t>{7, 8, 9, 10}));
  EXPECT_EQ(finished.front().description, "op 6");
  EXPECT_EQ(finished.back().description, "op 9");
  for (const auto& r : finished) {
    EXPECT_TRUE(r.finished);
    EXPECT_GE(r.end, r.start);
  }
  EXPECT_TRUE(recorder.in_progress().empty());
  // Finished in another order than begun: kept in the order they finished.
  const uint64_t a = recorder.begin("a"), b = recorder.begin("b");
  recorder.end(b);
  recorder.end(a);
  recorder.end(a);  // twice: ignored
  EXPECT_EQ(sequences(recorder.finished()), (std::vector<uint64_t>{9, 10, b, a}));
}

TEST(FlightRecorder, EntriesInProgressSurviveAnyNumberOfOthers) {
  FlightRecorder recorder(3);
  const uint64_t stuck = recorder.begin("recv from rank 0 tag 7", 0);
  for (int i = 0; i < 50; ++i) recorder.end(recorder.begin("quick"));
  const auto open = recorder.in_progress();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].sequence, stuck);
  EXPECT_EQ(open[0].peer, 0);
  EXPECT_FALSE(open[0].finished);
  EXPECT_EQ(recorder.finished().size(), 3u);
  EXPECT_EQ(recorder.finished().back().sequence, 51u);
}

TEST(FlightRecorder, SummaryTellsDurationsAndPeers) {
  FlightRecorder recorder(8);
  recorder.end(recorder.begin("done op", 2));
  const uint64_t open = recorder.begin("waiting op", 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const nlohmann::json s = recorder.summary();
  ASSERT_EQ(s["finished"].size(), 1u);
  ASSERT_EQ(s["in_progress"].size(), 1u);
  EXPECT_EQ(s["finished"][0]["what"], "done op");
  EXPECT_EQ(s["finished"][0]["peer"], 2);
  EXPECT_LT(s["finished"][0]["seconds"].get<double>(), 0.05);
  EXPECT_EQ(s["in_progress"][0]["seq"], open);
  EXPECT_EQ(s["in_progress"][0]["peer"], 1);
  EXPECT_GE(s["in_progress"][0]["seconds"].get<double>(), 0.055);
  EXPECT_GE(s["finished"][0]["started_s_ago"].get<double>(), 0.055);
  // `last` bounds the finished entries listed.
  for (int i = 0; i < 5; ++i) recorder.end(recorder.begin("more"));
  EXPECT_EQ(recorder.summary(2)["finished"].size(), 2u);
  EXPECT_THROW(FlightRecorder(0), strata::Error);
}

TEST(FlightRecorder, ScopeEndsItsEntryOnExceptions) {
  FlightRecorder recorder(8);
  try {
    FlightRecordScope scope("throws", -1, "", recorder);
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(recorder.in_progress().empty());
  ASSERT_EQ(recorder.finished().size(), 1u);
  EXPECT_EQ(recorder.finished()[0].description, "throws");
}

TEST(FlightRecorder, ThreadsRecordConcurrently) {
  FlightRecorder recorder(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) recorder.end(recorder.begin("x"));
    });
  }
  for (auto& thread : threads) thread.join();
  const auto finished = recorder.finished();
  EXPECT_EQ(finished.size(), 64u);
  EXPECT_TRUE(recorder.in_progress().empty());
  const std::vector<uint64_t> seqs = sequences(finished);
  const std::set<uint64_t> unique(seqs.begin(), seqs.end());
  EXPECT_EQ(unique.size(), 64u);
  EXPECT_LE(*unique.rbegin(), 8000u);
  EXPECT_EQ(recorder.begin("next"), 8001u);
}

TEST(RecordingCommunicator, RecordsEachOperationUntilItsWorkEnds) {
  auto comms = strata::parallel::InProcessCommunicator::create(2);
  FlightRecorder recorders[2] = {FlightRecorder(16), FlightRecorder(16)};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto comm = strata::parallel::record_operations(comms[r], recorders[r]);
      at::Tensor t = at::full({4}, r, at::kFloat);
      if (r == 0) {
        comm->send(t, 1, 3);
      } else {
        auto work = comm->irecv(t, 0, 3);
        // Posted, not yet waited for: in progress, waiting for rank 0.
        const auto open = recorders[1].in_progress();
        EXPECT_EQ(open.size(), 1u);
        if (!open.empty()) {
          EXPECT_EQ(open[0].description, "recv from rank 0 tag 3 (16 bytes)");
          EXPECT_EQ(open[0].peer, 0);
        }
        work->wait();
        EXPECT_EQ(t[0].item<float>(), 0.0f);
      }
      comm->allreduce(t)->wait();
      // Rank 1 alone in a group of its own: its peers are named by world rank.
      auto sub = comm->split(r, 0);
      at::Tensor one = at::ones({1});
      sub->barrier()->wait();
      sub->broadcast(one, 0)->wait();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(recorders[r].in_progress().empty()) << "rank " << r;
    std::vector<std::string> what;
    for (const auto& e : recorders[r].finished()) what.push_back(e.description);
    ASSERT_GE(what.size(), 4u);
    EXPECT_EQ(what[0],
              r == 0 ? "send to rank 1 tag 3 (16 bytes)" : "recv from rank 0 tag 3 (16 bytes)");
    EXPECT_EQ(what[1], "allreduce sum over world of 2 (16 bytes)");
    EXPECT_EQ(what.back(), "broadcast from rank " + std::to_string(r) + " over group of 1 (ranks " +
                               std::to_string(r) + ") (4 bytes)");
  }
}

}  // namespace
