#include "strata/programs/cli.h"

#include <c10/util/Exception.h>

#include <iostream>
#include <string>

#include <spdlog/spdlog.h>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"

namespace strata::programs {
namespace {

// A message goes out as exactly one line: scripts grep for `error:` and a multi-line
// LibTorch message would otherwise spill unprefixed lines.
void print_error(const std::string& message) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  std::cerr << "error: " << line << std::endl;
}

}  // namespace

int run_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const strata::Error& e) {
    print_error(e.what());
  } catch (const c10::Error& e) {
    print_error(e.what_without_backtrace());
  } catch (const CLI::Error& e) {
    // CallForHelp and Success carry exit code 0: the program asked to stop, nothing failed.
    if (e.get_exit_code() == 0) return 0;
    print_error(e.what());
  } catch (const std::exception& e) {
    print_error(e.what());
  } catch (...) {
    print_error("unknown exception");
  }
  return 1;
}

void configure_cli(CLI::App& app) {
  app.option_defaults()->always_capture_default();
  app.allow_extras(false);
}

std::optional<int> parse_cli(CLI::App& app, int argc, char** argv) {
  // Options added before configure_cli (or without it) still show their defaults: the
  // values they hold before parsing are the defaults.
  for (CLI::Option* option : app.get_options()) {
    if (option->get_default_str().empty()) option->capture_default_str();
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      app.exit(e, std::cout, std::cerr);  // prints the help text to stdout
      return 0;
    }
    print_error(e.what());
    return 1;
  }
  return std::nullopt;
}

std::string configuration_text(const CLI::App& app) {
  return app.config_to_str(/*default_also=*/true, /*write_description=*/false);
}

void TrainingRunFlags::check() const {
  STRATA_CHECK(checkpoint_every == 0 || !checkpoint_dir.empty(),
               "--checkpoint-every needs --checkpoint-dir");
  STRATA_CHECK(resume != "auto" || !checkpoint_dir.empty(),
               "--resume auto needs --checkpoint-dir (where it looks for checkpoints)");
}

std::optional<std::string> TrainingRunFlags::checkpoint_to_resume() const {
  if (resume.empty()) return std::nullopt;
  if (resume == "auto") {
    std::vector<std::string> rejected;
    auto path = core::latest_valid_checkpoint(checkpoint_dir, &rejected);
    for (const std::string& why : rejected) spdlog::warn("--resume auto: skipped {}", why);
    if (!path)
      spdlog::info("--resume auto: no checkpoint in {} yet, starting fresh", checkpoint_dir);
    return path;
  }
  auto path = core::find_checkpoint(resume);
  STRATA_CHECK(path.has_value(), "--resume ", resume, ": no checkpoint there");
  return path;
}

void add_training_run_flags(CLI::App& app, TrainingRunFlags& f) {
  app.add_option("--checkpoint-dir", f.checkpoint_dir,
                 "Write checkpoints <dir>/step-<N> here (rank 0 writes)");
  app.add_option("--checkpoint-every", f.checkpoint_every,
                 "Checkpoint every N steps (0: only at the end)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--resume", f.resume,
                 "Resume from a checkpoint, from the latest one in a directory, or 'auto': "
                 "the newest valid one in --checkpoint-dir if there is one");
  app.add_option("--metrics-out", f.metrics_out, "Write JSON-lines metrics here (rank 0)");
  app.add_option("--log-every", f.log_every, "Print progress every N steps")
      ->check(CLI::PositiveNumber);
}

}  // namespace strata::programs
