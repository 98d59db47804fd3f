#include "strata/programs/cli.h"

#include <c10/util/Exception.h>

#include <iostream>
#include <new>
#include <string>

#include "strata/core/error.h"
#include "strata/core/memory.h"
#include "strata/parallel/control/control_plane.h"

namespace strata::programs {
namespace {

// A message goes out as exactly one line: scripts grep for `error:` and a multi-line
// LibTorch message would otherwise spill unprefixed lines. A message that already starts
// with the prefix (a rethrown line) keeps one.
std::string error_line(const std::string& message) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  const std::string prefix = "error: ";
  while (line.rfind(prefix, 0) == 0) line.erase(0, prefix.size());
  return prefix + line;
}

// The last line of defence for a size no estimate caught: LibTorch's "[enforce fail at
// alloc_cpu.cpp:75] ... you tried to allocate N bytes" or std::bad_alloc, said with the
// amount and what to change.
std::string out_of_memory(const std::string& message) {
  static const std::string kTried = "you tried to allocate ";
  const size_t at = message.find(kTried);
  std::string amount;
  if (at != std::string::npos) {
    try {
      amount = " of " + core::format_bytes(std::stoll(message.substr(at + kTried.size())));
    } catch (const std::exception&) {  // no number after it: say it without the amount
    }
  }
  return "out of memory: a tensor" + amount + " does not fit in the " +
         core::format_bytes(core::physical_memory_bytes()) +
         " of this machine; a size on the command line (a batch, a width, a count) is too large";
}

bool is_allocation_failure(const std::string& message) {
  return message.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos;
}

// In a job of several ranks, the line is printed once for the job and the whole job ends
// at once (parallel::end_job_after_error); alone, the program exits as usual.
void print_error(const std::string& message) { parallel::end_job_after_error(error_line(message)); }

}  // namespace

int run_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const strata::Error& e) {
    print_error(e.what());
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    print_error(is_allocation_failure(message) ? out_of_memory(message) : message);
  } catch (const CLI::Error& e) {
    // CallForHelp and Success carry exit code 0: the program asked to stop, nothing failed.
    if (e.get_exit_code() == 0) return 0;
    print_error(e.what());
  } catch (const std::bad_alloc&) {
    print_error(out_of_memory(""));
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

}  // namespace strata::programs
