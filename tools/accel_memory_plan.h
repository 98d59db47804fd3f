#pragma once
// strata-accel memory-plan: the subcommand lives apart from strata_accel.cpp (issue 20).

#include <CLI/CLI.hpp>

#include <functional>

namespace strata::tools {

struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;  // after parsing, when app->parsed()
};

// Adds `memory-plan` to `app`; its flags live as long as the program.
Subcommand add_memory_plan_command(CLI::App& app);

}  // namespace strata::tools
