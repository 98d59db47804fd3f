#pragma once
// --overwrite, spelled and explained the same way by every program that writes files; the
// check itself is strata::core::check_output (core/output_files.h).

#include <CLI/CLI.hpp>

namespace strata::programs {

// Adds `--overwrite` to `app` (or a subcommand), bound to `overwrite`.
CLI::Option* add_overwrite_flag(CLI::App& app, bool& overwrite);

}  // namespace strata::programs
