#include "strata/programs/number_flags.h"

#include <spdlog/fmt/fmt.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "strata/core/threads.h"

namespace strata::programs {
namespace {

enum class Bound { Closed, OpenBelow };

// A bound as people write it: 1000000000 and 0.99, not 1e+09 or 1000000000.0.
std::string bound_text(double v) {
  if (std::abs(v) < 1e15 && v == std::floor(v)) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

struct Number {
  bool parsed = false;     // the whole text is a number
  bool too_large = false;  // a number, but beyond long double (1e5000)
  long double value = 0;
};

Number parse(const std::string& text) {
  Number n;
  if (text.empty()) return n;
  char* end = nullptr;
  errno = 0;
  n.value = std::strtold(text.c_str(), &end);
  n.parsed = end == text.c_str() + text.size();
  n.too_large = n.parsed && errno == ERANGE && std::isinf(n.value);
  return n;
}

// Why `text` is not a whole number in [min, max], or "" when it is; `text` becomes its
// decimal form, which is what CLI11 then converts (it would read 010 as octal).
std::string check_integer(const std::string& name, std::string& text, int64_t min, int64_t max) {
  const Number n = parse(text);
  if (!n.parsed) return fmt::format("{}: '{}' is not a number", name, text);
  if (!n.too_large && (!std::isfinite(n.value) || n.value != std::floor(n.value)))
    return fmt::format("{}: '{}' is not a whole number", name, text);
  if (n.too_large || n.value < static_cast<long double>(min) ||
      n.value > static_cast<long double>(max))
    return fmt::format("{} must be between {} and {}, got {}", name, min, max, text);
  text = std::to_string(static_cast<long long>(n.value));
  return "";
}

std::string check_real(const std::string& name, const std::string& text, double min, double max,
                       Bound bound) {
  const Number n = parse(text);
  if (!n.parsed) return fmt::format("{}: '{}' is not a number", name, text);
  const std::string range =
      bound == Bound::OpenBelow
          ? fmt::format("greater than {} and at most {}", bound_text(min), bound_text(max))
          : fmt::format("between {} and {}", bound_text(min), bound_text(max));
  if (n.too_large) return fmt::format("{} must be {}, got {}", name, range, text);
  if (!std::isfinite(n.value)) return fmt::format("{} must be a finite number, got {}", name, text);
  const bool below = bound == Bound::OpenBelow ? n.value <= min : n.value < min;
  if (below || n.value > max) return fmt::format("{} must be {}, got {}", name, range, text);
  return "";
}

// Throws instead of returning the message: CLI11 would prefix a returned one with "<flag>: ".
CLI::Option* attach(CLI::Option* option, const std::string& description,
                    std::function<std::string(const std::string&, std::string&)> check) {
  const std::string name = option->get_name();
  CLI::Validator validator(
      [name, check = std::move(check)](std::string& text) -> std::string {
        const std::string message = check(name, text);
        if (!message.empty()) throw FlagValueError(message);
        return "";
      },
      description);
  // transform, not check: CLI11 gives a check a copy, and the decimal form must reach the
  // conversion.
  return option->transform(validator);
}

}  // namespace

CLI::Option* integer_range(CLI::Option* option, int64_t min, int64_t max) {
  return attach(option, fmt::format("in [{}, {}]", min, max),
                [min, max](const std::string& name, std::string& text) {
                  return check_integer(name, text, min, max);
                });
}

CLI::Option* integer_range_or(CLI::Option* option, int64_t min, int64_t max,
                              const std::string& word) {
  return attach(option, fmt::format("in [{}, {}] or {}", min, max, word),
                [min, max, word](const std::string& name, std::string& text) {
                  if (text == word) return std::string();
                  const std::string message = check_integer(name, text, min, max);
                  return message.empty() ? message : message + " (or " + word + ")";
                });
}

CLI::Option* real_range(CLI::Option* option, double min, double max) {
  return attach(option, fmt::format("in [{}, {}]", bound_text(min), bound_text(max)),
                [min, max](const std::string& name, std::string& text) {
                  return check_real(name, text, min, max, Bound::Closed);
                });
}

CLI::Option* positive_real(CLI::Option* option, double max) {
  return attach(option, fmt::format("in (0, {}]", bound_text(max)),
                [max](const std::string& name, std::string& text) {
                  return check_real(name, text, 0, max, Bound::OpenBelow);
                });
}

CLI::Option* threads_range(CLI::Option* option) {
  return integer_range(option, 1, core::max_threads());
}

}  // namespace strata::programs
