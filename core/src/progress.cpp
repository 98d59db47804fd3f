#include "strata/core/progress.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <string>

#include "strata/core/error.h"

namespace strata::core {
namespace {

// 7912.4 -> "7,912": throughput is read at a glance, separators help.
std::string with_commas(double value) {
  std::string digits = std::to_string(static_cast<int64_t>(std::llround(std::max(0.0, value))));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
  return digits;
}

// 41 -> "0:41", 3725 -> "1:02:05".
std::string duration(double seconds) {
  const int64_t total = std::llround(std::max(0.0, seconds));
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, s) : fmt::format("{}:{:02}", m, s);
}

}  // namespace

ProgressReporter::ProgressReporter(int64_t total_steps, int64_t log_every, bool enabled)
    : total_steps_(total_steps), log_every_(log_every), enabled_(enabled) {
  STRATA_CHECK(total_steps >= 0, "progress: total_steps ", total_steps, ", expected at least 0");
  STRATA_CHECK(log_every >= 1, "progress: log_every ", log_every, ", expected at least 1");
}

void ProgressReporter::update(int64_t step, int64_t epoch, double loss,
                              int64_t samples_since_last) {
  if (!enabled_) return;
  if (first_step_ < 0) first_step_ = step - 1;
  window_samples_ += samples_since_last;
  if (step % log_every_ != 0 && step != total_steps_) return;

  const double window = since_print_.seconds();
  const double rate = window > 0 ? static_cast<double>(window_samples_) / window : 0.0;
  const int64_t done = step - first_step_;
  const double per_step = done > 0 ? since_start_.seconds() / static_cast<double>(done) : 0.0;
  const int64_t left = std::max<int64_t>(0, total_steps_ - step);
  const int width = static_cast<int>(std::to_string(total_steps_).size());
  const std::string epoch_text = epoch >= 0 ? fmt::format("  epoch {}", epoch) : "";
  spdlog::info("step {:>{}}/{}{}  loss {:.4f}  {} samples/s  ETA {}", step, width, total_steps_,
               epoch_text, loss, with_commas(rate), duration(per_step * left));
  window_samples_ = 0;
  since_print_.reset();
}

}  // namespace strata::core
