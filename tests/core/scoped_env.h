#pragma once
// ScopedEnv: an environment variable set (or unset) for a test's scope.

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace strata::test {

// Sets an environment variable (unsets it for std::nullopt) for the guard's lifetime, then
// restores what it was, so that a failing test leaves no override to the next.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::optional<std::string>& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    set(value);
  }
  ~ScopedEnv() { set(old_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

  void set(const std::optional<std::string>& value) {
    if (value)
      ::setenv(name_.c_str(), value->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace strata::test
