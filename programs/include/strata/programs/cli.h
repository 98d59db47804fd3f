#pragma once
// Command-line conventions shared by every strata program: one `error: ...` line on
// stderr and a non-zero exit for any user mistake, and `--help` that shows defaults.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace strata::programs {

// Runs `body` and turns any escaping exception (strata::Error, c10::Error, a CLI11
// error, std::exception) into one line `error: <message>` on stderr and exit status 1,
// so that a user mistake never ends in std::terminate and a core dump. On a rank of a job
// of several ranks the error ends the whole job at once, its line printed once for the job
// (parallel::end_job_after_error; docs/reliability.md).
int run_main(const std::function<int()>& body);

// Applies strata's conventions to `app`: every option's default is captured and shown
// by `--help`, and unknown flags are errors. Call it before adding options.
void configure_cli(CLI::App& app);

// Parses the command line. Returns 0 after printing help to stdout on `--help`, 1 after
// printing one line `error: <message>` to stderr on a parse error (as run_main does, so
// under strata-run the ranks' same parse error is printed once), nullopt on success:
//   if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
std::optional<int> parse_cli(CLI::App& app, int argc, char** argv);

// Every option of `app` with its value, defaults included, one "name=value" per line in a
// fixed order: what ranks compare at start-up (parallel::check_same_configuration).
std::string configuration_text(const CLI::App& app);

// Binds `name` to an enum field (an Options field, with no copy): the command line gives one
// of `names`, which CLI11's transformer maps to its value. Help and errors read as for a
// string flag checked with CLI::IsMember: the names, and the default by its name.
//   add_enum_option(app, "--recompute", options.recompute(),
//                   {{"never", Recompute::Never}, {"always", Recompute::Always}}, "...");
template <typename Enum>
CLI::Option* add_enum_option(CLI::App& app, const std::string& name, Enum& value,
                             const std::vector<std::pair<std::string, Enum>>& names,
                             const std::string& description) {
  std::vector<std::string> choices;
  std::string default_name;
  for (const auto& [choice, choice_value] : names) {
    choices.push_back(choice);
    if (choice_value == value) default_name = choice;
  }
  return app.add_option(name, value, description)
      ->type_name("TEXT")
      ->transform(CLI::Transformer(names).description(""))
      // Inserted before the transformer (CLI11 runs transforms last added first): a name
      // outside `names` is refused as it was typed.
      ->transform(CLI::IsMember(choices))
      ->default_str(default_name);
}

}  // namespace strata::programs
