#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "strata/core/threads.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

using strata::programs::configure_cli;
using strata::programs::integer_range;
using strata::programs::parse_cli;
using strata::programs::positive_real;
using strata::programs::real_range;
using strata::programs::threads_range;

namespace {

// Parses `value` for one flag of each kind; returns the one stderr line ("" on success).
struct Flags {
  int64_t steps = 0;
  int threads = 1;
  double lr = 0.1, timeout = 0;
  uint64_t seed = 0;
  std::vector<int> bits;

  std::string parse(std::vector<std::string> words) {
    CLI::App app("test");
    configure_cli(app);
    integer_range(app.add_option("--steps", steps, ""), 0, 1'000'000'000);
    threads_range(app.add_option("--threads", threads, ""));
    positive_real(app.add_option("--lr", lr, ""), 1000);
    real_range(app.add_option("--timeout", timeout, ""), 0, 1e9);
    integer_range(app.add_option("--seed", seed, ""), 0, std::numeric_limits<int64_t>::max());
    integer_range(app.add_option("--bits", bits, "")->delimiter(','), 1, 24);
    words.insert(words.begin(), "prog");
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    testing::internal::CaptureStderr();
    const auto code = parse_cli(app, static_cast<int>(argv.size()), argv.data());
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(code.has_value(), !err.empty()) << err;
    return err;
  }
};

std::string error_for(std::vector<std::string> words) { return Flags().parse(std::move(words)); }

}  // namespace

TEST(NumberFlags, InRangeValuesAreTaken) {
  Flags f;
  EXPECT_EQ(f.parse({"--steps", "1e3", "--lr", "3e-4", "--timeout", "0", "--bits", "4,8", "--seed",
                     "9223372036854775807"}),
            "");
  EXPECT_EQ(f.steps, 1000);  // whole in any notation
  EXPECT_DOUBLE_EQ(f.lr, 3e-4);
  EXPECT_EQ(f.bits, (std::vector<int>{4, 8}));
  EXPECT_EQ(f.seed, 9223372036854775807u);
  EXPECT_EQ(f.parse({"--steps", "010"}), "");
  EXPECT_EQ(f.steps, 10);  // decimal, not CLI11's octal
}

TEST(NumberFlags, EachClassOfBadNumberIsOneLineNamingTheFlag) {
  EXPECT_EQ(error_for({"--steps", "abc"}), "error: --steps: 'abc' is not a number\n");
  EXPECT_EQ(error_for({"--steps", "1.5"}), "error: --steps: '1.5' is not a whole number\n");
  EXPECT_EQ(error_for({"--steps", "-1"}),
            "error: --steps must be between 0 and 1000000000, got -1\n");
  EXPECT_EQ(error_for({"--steps", "99999999999999999999999"}),
            "error: --steps must be between 0 and 1000000000, got 99999999999999999999999\n");
  EXPECT_EQ(error_for({"--steps", "1e5000"}),
            "error: --steps must be between 0 and 1000000000, got 1e5000\n");
  EXPECT_EQ(error_for({"--seed", "-1"}),
            "error: --seed must be between 0 and 9223372036854775807, got -1\n");
  EXPECT_EQ(error_for({"--bits", "4,99"}), "error: --bits must be between 1 and 24, got 99\n");
  EXPECT_EQ(error_for({"--timeout", "nan"}), "error: --timeout must be a finite number, got nan\n");
  EXPECT_EQ(error_for({"--timeout", "-inf"}),
            "error: --timeout must be a finite number, got -inf\n");
  EXPECT_EQ(error_for({"--timeout", "2e9"}),
            "error: --timeout must be between 0 and 1000000000, got 2e9\n");
  EXPECT_EQ(error_for({"--lr", "0"}),
            "error: --lr must be greater than 0 and at most 1000, got 0\n");
  EXPECT_EQ(error_for({"--lr", "NaN"}), "error: --lr must be a finite number, got NaN\n");
  EXPECT_EQ(error_for({"--lr", "1x"}), "error: --lr: '1x' is not a number\n");
  EXPECT_EQ(error_for({"--threads", "100000"}), "error: --threads must be between 1 and " +
                                                    std::to_string(strata::core::max_threads()) +
                                                    ", got 100000\n");
}

TEST(NumberFlags, MaxThreadsIsBounded) {
  EXPECT_GE(strata::core::max_threads(), 4);
  EXPECT_LE(strata::core::max_threads(), 1024);
}
