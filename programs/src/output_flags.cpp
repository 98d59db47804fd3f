#include "strata/programs/output_flags.h"

namespace strata::programs {

CLI::Option* add_overwrite_flag(CLI::App& app, bool& overwrite) {
  return app.add_flag("--overwrite", overwrite,
                      "Replace outputs that already exist (never an input, never a directory "
                      "holding other files)");
}

}  // namespace strata::programs
