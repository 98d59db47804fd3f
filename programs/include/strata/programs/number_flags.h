#pragma once
// Every number on a command line has a stated range, checked as typed, before the program
// uses it (issue 23). CLI11 alone clamps an integer too large for int64_t to INT64_MAX, lets
// NaN and infinity through PositiveNumber, and words its errors as "Could not convert" or a
// 309-digit bound; these checks read as people write ranges:
//
//   --steps: 'abc' is not a number
//   --steps: '1.5' is not a whole number
//   --threads must be between 1 and 8, got 100000
//   --steps must be between 0 and 1000000000, got 99999999999999999999999
//   --timeout must be a finite number, got nan
//   --lr must be greater than 0 and at most 1000, got 0
//
//   integer_range(app.add_option("--batch", c.batch, "Batch size"), 1, kMaxBatch);
//   positive_real(app.add_option("--lr", c.lr, "Learning rate"), kMaxLearningRate);
//
// They work on every element of a list option (--bits 4,8) and on option functions; the
// error is one line naming the flag, printed by parse_cli.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <string>

namespace strata::programs {

// Stated ranges shared by the programs, so that a flag means the same everywhere.
constexpr int64_t kMaxSteps = 1'000'000'000;     // --steps, --max-steps, --qfx-steps
constexpr int64_t kMaxEpochs = 100'000;          // --epochs
constexpr int64_t kMaxBatch = 1'000'000;         // rows of one batch
constexpr int64_t kMaxWidth = 1'000'000;         // a model dimension (--d-model, --hidden)
constexpr int64_t kMaxLayers = 10'000;           // layers, heads, experts
constexpr int64_t kMaxRanks = 1024;              // pipeline stages, ranks, expert-parallel size
constexpr int64_t kMaxMicroBatches = 1'000'000;  // micro-batches of one batch
constexpr double kMaxLearningRate = 1000;        // a learning rate (> 0)
constexpr double kMaxSeconds = 1e9;              // a time limit (about 30 years)
constexpr int64_t kMaxSeed = std::numeric_limits<int64_t>::max();  // a random seed
constexpr int64_t kMaxContext = 1'000'000;                         // tokens of one sequence
constexpr double kMaxTemperature = 1000;                           // a sampling temperature
constexpr int64_t kFashionMnistTrainImages = 60'000;
constexpr int64_t kFashionMnistTestImages = 10'000;
constexpr int64_t kMaxTokens = 1'000'000'000;  // calibration or recorded tokens
constexpr double kMaxDamp = 1e6;               // GPTQ dampening (a fraction)
constexpr double kMaxLimit = 1e12;             // a design limit (ms, mJ, mm^2)
constexpr double kMaxCost = 1e9;               // a simulated cost (time units)
constexpr double kMaxParameters = 1e15;        // a parameter budget
constexpr int64_t kMaxTraceSteps = 1000;       // steps a Chrome trace covers
constexpr double kMaxBucketMb = 1e6;           // a buffer size in MB (a TB)
constexpr double kMaxCapacityFactor = 1000;    // MoE expert capacity factor
constexpr double kMaxLossCoefficient = 1e6;    // the weight of an auxiliary loss

// A flag value outside its range: what parse_cli prints, as it is (no "<flag>: " prefix).
class FlagValueError : public CLI::ParseError {
 public:
  explicit FlagValueError(std::string message)
      : CLI::ParseError("FlagValueError", std::move(message), CLI::ExitCodes::ValidationError) {}
};

// The value must be a whole number in [min, max] (written in decimal, or as 1e6 when whole).
CLI::Option* integer_range(CLI::Option* option, int64_t min, int64_t max);
// The same, or the word `word` (e.g. "auto"), for a flag bound to a string.
CLI::Option* integer_range_or(CLI::Option* option, int64_t min, int64_t max,
                              const std::string& word);
// The value must be a finite number in [min, max].
CLI::Option* real_range(CLI::Option* option, double min, double max);
// The value must be a finite number in (0, max].
CLI::Option* positive_real(CLI::Option* option, double max);
// The most --threads a program accepts: core::max_threads() (4 x the hardware threads, at
// most 1024).
CLI::Option* threads_range(CLI::Option* option);

}  // namespace strata::programs
