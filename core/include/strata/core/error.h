#pragma once
// strata::Error and the check macros.
//
// A user mistake (a bad flag, a bad file, a shape mismatch, a corrupt checkpoint) raises
// strata::Error with a message that names the thing, the value seen and the value
// expected. Programs catch it in main (see strata::programs::run_main), print one line and
// exit non-zero.

#include <sstream>
#include <stdexcept>
#include <string>

namespace strata {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace strata

// STRATA_CHECK(cond, "message parts", value, ...): throws strata::Error with the parts
// streamed together when cond is false.
#define STRATA_CHECK(cond, ...)                                                \
  do {                                                                         \
    if (!(cond)) throw ::strata::Error(::strata::detail::concat(__VA_ARGS__)); \
  } while (0)

// STRATA_CHECK_EQ(seen, expected, "what"): "what: got <seen>, expected <expected>".
#define STRATA_CHECK_EQ(seen, expected, what)                                                     \
  do {                                                                                            \
    const auto& strata_seen_ = (seen);                                                            \
    const auto& strata_expected_ = (expected);                                                    \
    if (!(strata_seen_ == strata_expected_))                                                      \
      throw ::strata::Error(::strata::detail::concat(what, ": got ", strata_seen_, ", expected ", \
                                                     strata_expected_));                          \
  } while (0)

#define STRATA_FAIL(...) throw ::strata::Error(::strata::detail::concat(__VA_ARGS__))
