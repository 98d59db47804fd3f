// Throughput of the bit-exact fixed-point cast against the plain LibTorch rounding a
// quick emulation would use, at::round(x * 2^F) / 2^F (one rounding mode, no overflow
// handling, not bit-exact), measured in the same run.
//
//   build/bench/bench_quant --elements 4000000 --runs 5 --threads 1,2
//
// Prints a table and one JSON object per figure (docs/benchmarks.md):
// {"bench":"quant","case":"<type> <dtype> <n>t","value":elements/s,"unit":"elements/s",
//  "baseline":elements/s of the at::round baseline,"ratio":value/baseline,"runs":n}
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "strata/core/cli.h"
#include "strata/core/timer.h"
#include "strata/quant/fixed_point.h"

namespace {

namespace quant = strata::quant;

// Median seconds of `runs` calls of `body`, after one untimed call.
template <typename Body>
double median_seconds(int runs, const Body& body) {
  body();
  std::vector<double> seconds;
  for (int i = 0; i < runs; ++i) {
    strata::core::Stopwatch clock;
    body();
    seconds.push_back(clock.seconds());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  return strata::core::run_main([&] {
    CLI::App app{"fixed_point_cast throughput against at::round(x * 2^F) / 2^F"};
    strata::core::configure_cli(app);
    int64_t elements = 4000000;
    int runs = 5;
    std::vector<int> threads = {1, 2};
    std::vector<std::string> types = {"ap_fixed<8,3,AP_RND,AP_SAT>", "ap_fixed<16,6>",
                                      "ap_fixed<32,8,AP_RND_CONV,AP_SAT_SYM>"};
    app.add_option("--elements", elements, "Elements per tensor")->check(CLI::PositiveNumber);
    app.add_option("--runs", runs, "Timed runs per figure (median)")->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "Thread counts")->delimiter(',');
    app.add_option("--types", types, "Types to cast to")->delimiter(';');
    if (auto code = strata::core::parse_cli(app, argc, argv)) return *code;

    torch::manual_seed(0);
    std::cout << fmt::format("{:<40} {:>6} {:>3} {:>14} {:>14} {:>6}\n", "type", "dtype", "t",
                             "cast elem/s", "round elem/s", "ratio");
    for (const std::string& text : types) {
      const quant::FixedPointType t = quant::parse_fixed_point_type(text);
      const double scale = std::ldexp(1.0, t.fraction_bits());
      for (const auto dtype : {torch::kFloat, torch::kDouble}) {
        const at::Tensor x = torch::randn({elements}, dtype) * std::ldexp(1.0, t.integer_bits - 1);
        for (const int n : threads) {
          at::set_num_threads(n);
          const double cast_s = median_seconds(runs, [&] { quant::fixed_point_cast(x, t); });
          const double round_s = median_seconds(runs, [&] { at::round(x * scale) / scale; });
          const double value = elements / cast_s, baseline = elements / round_s;
          const std::string dtype_name = dtype == torch::kFloat ? "float" : "double";
          std::cout << fmt::format("{:<40} {:>6} {:>3} {:>14.4g} {:>14.4g} {:>6.2f}\n", text,
                                   dtype_name, n, value, baseline, value / baseline);
          std::cout << nlohmann::json{{"bench", "quant"},
                                      {"case", fmt::format("{} {} {}t", text, dtype_name, n)},
                                      {"value", value},
                                      {"unit", "elements/s"},
                                      {"baseline", baseline},
                                      {"ratio", value / baseline},
                                      {"runs", runs}}
                           .dump()
                    << "\n";
        }
      }
    }
    return 0;
  });
}
