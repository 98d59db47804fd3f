#include "strata/core/json_fields.h"

#include <cmath>
#include <sstream>

#include "strata/core/error.h"
#include "strata/core/input_files.h"

namespace strata::core {
namespace {

// A value as a person reads it in a message, cut short: a long string or a whole array
// would not fit on one line.
std::string show(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::binary: return "binary data";
    case nlohmann::json::value_t::number_float: {
      const double d = value.get<double>();
      if (std::isnan(d)) return "nan";  // dump() would say null
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      return value.dump();
    }
    default: break;
  }
  // A string built in memory may hold bytes that are not UTF-8; dump() would throw.
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  constexpr size_t kShown = 40;
  if (text.size() > kShown) text = text.substr(0, kShown) + "...";
  return text;
}

std::string integer_range(int64_t min, int64_t max) {
  if (min == std::numeric_limits<int64_t>::min() && max == JsonField::kMaxInt) return "an integer";
  if (max == JsonField::kMaxInt) return detail::concat("an integer of at least ", min);
  return detail::concat("an integer from ", min, " to ", max);
}

std::string number_range(double min, double max) {
  const double huge = std::numeric_limits<double>::max();
  if (min == -huge && max == huge) return "a finite number";
  if (max == huge) return detail::concat("a finite number of at least ", min);
  return detail::concat("a number from ", min, " to ", max);
}

}  // namespace

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    STRATA_CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos, source,
                 ": not JSON (the file is empty)");
    // e.byte is the 1-based position of the character the parser stopped at.
    const size_t stop = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    size_t line = 1, column = 1;
    for (size_t i = 0; i < stop; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    STRATA_FAIL(source, ": not JSON (line ", line, ", column ", column, ")");
  } catch (const nlohmann::json::exception& e) {
    STRATA_FAIL(source, ": not JSON (", json_error_text(e), ")");
  }
}

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  return parse_json(read_input(path, what), what.empty() ? path : what + " " + path);
}

std::string json_error_text(const std::exception& error) {
  const std::string text = error.what();
  if (text.rfind("[json.exception.", 0) == 0) {
    const size_t end = text.find("] ");
    if (end != std::string::npos) return text.substr(end + 2);
  }
  return text;
}

// ---------------------------------------------------------------- JsonField

JsonField::JsonField(const nlohmann::json& value, std::string source, std::string where)
    : value_(&value), source_(std::move(source)), where_(std::move(where)) {}

std::string JsonField::name() const {
  return where_.empty() ? source_ : source_ + ": field '" + where_ + "'";
}

void JsonField::fail(const std::string& expected) const {
  STRATA_CHECK(value_ != nullptr, source_, ": missing field '", where_, "', expected ", expected);
  STRATA_FAIL(name(), ": got ", show(*value_), ", expected ", expected);
}

const nlohmann::json& JsonField::json() const { return present("a value"); }

const nlohmann::json& JsonField::present(const std::string& expected) const {
  if (value_ == nullptr) fail(expected);
  return *value_;
}

bool JsonField::has(const std::string& key) const {
  return value_ != nullptr && value_->is_object() && value_->contains(key);
}

JsonField JsonField::operator[](const std::string& key) const {
  const nlohmann::json& value = present("an object with field '" + key + "'");
  if (!value.is_object()) fail("an object with field '" + key + "'");
  JsonField child(value, source_, where_.empty() ? key : where_ + "." + key);
  const auto it = value.find(key);
  child.value_ = it == value.end() ? nullptr : &*it;
  return child;
}

JsonField JsonField::operator[](size_t index) const {
  const std::string expected = detail::concat("an array of more than ", index, " elements");
  const nlohmann::json& value = present(expected);
  if (!value.is_array() || index >= value.size()) fail(expected);
  return JsonField(value[index], source_, where_ + "[" + std::to_string(index) + "]");
}

std::vector<JsonField> JsonField::elements() const {
  const nlohmann::json& value = present("an array");
  if (!value.is_array()) fail("an array");
  std::vector<JsonField> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) out.push_back((*this)[i]);
  return out;
}

int64_t JsonField::integer(int64_t min, int64_t max) const {
  const std::string expected = integer_range(min, max);
  const nlohmann::json& value = present(expected);
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (max < 0 || u > static_cast<uint64_t>(max)) fail(expected);
    if (static_cast<int64_t>(u) < min) fail(expected);
    return static_cast<int64_t>(u);
  }
  if (!value.is_number_integer()) fail(expected);
  const int64_t i = value.get<int64_t>();
  if (i < min || i > max) fail(expected);
  return i;
}

double JsonField::number(double min, double max) const {
  const std::string expected = number_range(min, max);
  const nlohmann::json& value = present(expected);
  if (!value.is_number()) fail(expected);
  const double d = value.get<double>();
  if (!std::isfinite(d) || d < min || d > max) fail(expected);
  return d;
}

std::string JsonField::string() const {
  const nlohmann::json& value = present("a string");
  if (!value.is_string()) fail("a string");
  return value.get<std::string>();
}

bool JsonField::boolean() const {
  const nlohmann::json& value = present("true or false");
  if (!value.is_boolean()) fail("true or false");
  return value.get<bool>();
}

std::vector<int64_t> JsonField::integers(int64_t min, int64_t max) const {
  std::vector<int64_t> out;
  for (const JsonField& element : elements()) out.push_back(element.integer(min, max));
  return out;
}

std::vector<double> JsonField::numbers(double min, double max) const {
  std::vector<double> out;
  for (const JsonField& element : elements()) out.push_back(element.number(min, max));
  return out;
}

const JsonField& JsonField::object() const {
  if (!present("an object").is_object()) fail("an object");
  return *this;
}

}  // namespace strata::core
