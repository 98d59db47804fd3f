#pragma once
// Reading the JSON files users hand us, with errors a person can act on: parse_json says
// where a text stops being JSON; JsonField reads a document's fields by type and range.
// Every error is one strata::Error line naming the file and the field, e.g.
//   run/step-00000002/manifest.json: field 'step': got 1e+30, expected an integer from 0
//   to 1000000000000000
// and never the library's own text ("[json.exception.type_error.302] ...",
// "basic_filebuf::underflow error reading the file").

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace strata::core {

// `text` as JSON; "<source>: not JSON (line L, column C)" when it is not.
nlohmann::json parse_json(const std::string& text, const std::string& source);

// read_input, then parse_json with the path as the source.
nlohmann::json read_json_file(const std::string& path, const std::string& what = "");

// `text` without nlohmann's "[json.exception.type_error.302] " prefix: for the rare
// place that cannot name the field itself.
std::string json_error_text(const std::exception& error);

// A JSON value and where it was found: the file (or another source: "pipeline schedule")
// and the path of fields that leads to it ("tensors[3].shape"). Reading it as a type it
// does not have, or out of its range, raises strata::Error naming both. A field that is
// absent can be asked for: reading it raises "missing field".
class JsonField {
 public:
  static constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

  JsonField(const nlohmann::json& value, std::string source, std::string where = "");

  // "<source>: field '<where>'" (just the source at the top level): the start of a
  // message about this value, for checks across fields.
  std::string name() const;
  const std::string& source() const { return source_; }
  const std::string& where() const { return where_; }
  bool missing() const { return value_ == nullptr; }
  const nlohmann::json& json() const;  // raises "missing field" when missing()

  // The field `key` of this object (which may be missing; raises when this value is not an
  // object), and element `index` of this array.
  bool has(const std::string& key) const;
  JsonField operator[](const std::string& key) const;
  JsonField operator[](size_t index) const;
  // The elements of an array (raises when not an array).
  std::vector<JsonField> elements() const;

  // An integer from `min` to `max`: 3, not 3.0, 3.5, 1e30, "3" or true.
  int64_t integer(int64_t min = std::numeric_limits<int64_t>::min(), int64_t max = kMaxInt) const;
  // A finite number from `min` to `max` (an integer is a number).
  double number(double min = -std::numeric_limits<double>::max(),
                double max = std::numeric_limits<double>::max()) const;
  std::string string() const;
  bool boolean() const;
  // An array of integers each from `min` to `max`.
  std::vector<int64_t> integers(int64_t min = std::numeric_limits<int64_t>::min(),
                                int64_t max = kMaxInt) const;
  std::vector<double> numbers(double min = -std::numeric_limits<double>::max(),
                              double max = std::numeric_limits<double>::max()) const;
  // Raises unless this is an object; returns *this for chaining.
  const JsonField& object() const;

  // Raises "<name()>: got <value>, expected <expected>".
  [[noreturn]] void fail(const std::string& expected) const;

 private:
  // The value; raises "missing field ..., expected <expected>" when missing().
  const nlohmann::json& present(const std::string& expected) const;

  const nlohmann::json* value_;  // null when missing
  std::string source_, where_;
};

}  // namespace strata::core
