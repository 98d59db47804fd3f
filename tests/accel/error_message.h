#pragma once
// What the accel tests ask of an error: its message, and whether it says something.

#include <functional>
#include <string>

#include "strata/core/error.h"

namespace strata::accel::test_support {

// The message of the strata::Error `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline bool has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos;
}

}  // namespace strata::accel::test_support
