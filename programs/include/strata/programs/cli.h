#pragma once
// Command-line conventions shared by every strata program: one `error: ...` line on
// stderr and a non-zero exit for any user mistake, and `--help` that shows defaults.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace strata::programs {

// Runs `body` and turns any escaping exception (strata::Error, c10::Error, a CLI11
// error, std::exception) into one line `error: <message>` on stderr and exit status 1,
// so that a user mistake never ends in std::terminate and a core dump.
int run_main(const std::function<int()>& body);

// Applies strata's conventions to `app`: every option's default is captured and shown
// by `--help`, and unknown flags are errors. Call it before adding options.
void configure_cli(CLI::App& app);

// Parses the command line. Returns 0 after printing help to stdout on `--help`, 1 after
// printing one line `error: <message>` to stderr on a parse error, nullopt on success:
//   if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
std::optional<int> parse_cli(CLI::App& app, int argc, char** argv);

// Every option of `app` with its value, defaults included, one "name=value" per line in a
// fixed order: what ranks compare at start-up (parallel::check_same_configuration).
std::string configuration_text(const CLI::App& app);

// The flags every training program shares: checkpoints, resuming, metrics, progress.
struct TrainingRunFlags {
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;  // 0: only at the end
  std::string resume;
  std::string metrics_out;
  int64_t log_every = 50;

  // After parsing: --checkpoint-every or --resume auto without --checkpoint-dir is an error.
  void check() const;
  // The checkpoint to resume from: none without --resume; with --resume auto the newest
  // valid checkpoint in --checkpoint-dir, or none yet (a fresh start, so that a job can
  // be restarted with the same command line until it finishes); otherwise the checkpoint
  // --resume names (or the latest in that directory), and a strata::Error if there is none.
  std::optional<std::string> checkpoint_to_resume() const;
};
// --checkpoint-dir, --checkpoint-every, --resume (a path or "auto"), --metrics-out,
// --log-every.
void add_training_run_flags(CLI::App& app, TrainingRunFlags& flags);

}  // namespace strata::programs
