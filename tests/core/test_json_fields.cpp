// Reading a user's file: a missing file, a directory and a text that is not JSON each get
// their own line naming the file, and JSON fields are read by type and range with errors
// naming the file and the field, never with nlohmann's or the C++ library's own text.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "strata/core/input_files.h"
#include "strata/core/json_fields.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using strata::core::JsonField;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;
using testing::Not;

TEST(InputFiles, MissingDirectoryAndReadableFilesAreTold) {
  TempDir dir;
  std::filesystem::create_directories(dir / "sub");
  strata::test::write_file(dir / "a.txt", "abc");
  EXPECT_EQ(error_of([&] { strata::core::read_input(dir / "nope.txt", "--load"); }),
            "--load " + (dir / "nope.txt") + ": no such file");
  EXPECT_EQ(error_of([&] { strata::core::read_input(dir / "nope/x.txt"); }),
            dir / "nope/x.txt: no such file");
  EXPECT_EQ(error_of([&] { strata::core::open_input(dir / "sub", "--config"); }),
            "--config " + (dir / "sub") + ": is a directory, expected a file");
  EXPECT_EQ(error_of([&] { strata::core::read_input(dir / "a.txt/x"); }),
            dir / "a.txt/x: no such file");
  EXPECT_EQ(strata::core::read_input(dir / "a.txt"), "abc");
  EXPECT_EQ(error_of([&] { strata::core::check_input_directory(dir / "a.txt", "data"); }),
            "data " + (dir / "a.txt") + ": is a file, expected a directory");
  EXPECT_EQ(
      error_of([&] { strata::core::check_input_directory(dir / "none", "data", "install it"); }),
      "data " + (dir / "none") + ": no such directory (install it)");
  EXPECT_EQ(error_of([&] { strata::core::check_input_directory(dir / "sub", "data"); }),
            "<no error>");
}

TEST(JsonText, NotJsonSaysWhere) {
  EXPECT_EQ(error_of([] { strata::core::parse_json("not json", "x.json"); }),
            "x.json: not JSON (line 1, column 2)");
  EXPECT_EQ(error_of([] { strata::core::parse_json("{\"a\": 1,\n  \"b\": ]}", "x.json"); }),
            "x.json: not JSON (line 2, column 8)");
  EXPECT_EQ(error_of([] { strata::core::parse_json(" \n", "x.json"); }),
            "x.json: not JSON (the file is empty)");
  EXPECT_THAT(error_of([] { strata::core::parse_json("[1e999]", "x.json"); }),
              Not(HasSubstr("json.exception")));
  EXPECT_EQ(strata::core::parse_json("{\"a\": [1, 2]}", "x.json")["a"][1], 2);
}

TEST(JsonField, IntegersAreWholeAndInRange) {
  const json doc = json::parse(R"({"n": 7, "big": 18446744073709551615, "f": 2.0,
      "huge": 1e30, "s": "3", "b": true, "neg": -2, "list": [1, -1]})");
  const JsonField root(doc, "m.json");
  EXPECT_EQ(root["n"].integer(0, 10), 7);
  EXPECT_EQ(error_of([&] { root["n"].integer(0, 5); }),
            "m.json: field 'n': got 7, expected an integer from 0 to 5");
  EXPECT_EQ(error_of([&] { root["big"].integer(0); }),
            "m.json: field 'big': got 18446744073709551615, expected an integer of at least 0");
  EXPECT_EQ(error_of([&] { root["f"].integer(); }),
            "m.json: field 'f': got 2.0, expected an integer");
  EXPECT_EQ(error_of([&] { root["huge"].integer(0, 100); }),
            "m.json: field 'huge': got 1e+30, expected an integer from 0 to 100");
  EXPECT_EQ(error_of([&] { root["s"].integer(); }),
            "m.json: field 's': got \"3\", expected an integer");
  EXPECT_EQ(error_of([&] { root["b"].integer(); }),
            "m.json: field 'b': got true, expected an integer");
  EXPECT_EQ(error_of([&] { root["neg"].integer(0); }),
            "m.json: field 'neg': got -2, expected an integer of at least 0");
  EXPECT_EQ(error_of([&] { root["list"].integers(0); }),
            "m.json: field 'list[1]': got -1, expected an integer of at least 0");
  EXPECT_EQ(error_of([&] { root["gone"].integer(1, 2); }),
            "m.json: missing field 'gone', expected an integer from 1 to 2");
  EXPECT_EQ(error_of([&] { root["n"]["x"].integer(); }),
            "m.json: field 'n': got 7, expected an object with field 'x'");
}

TEST(JsonField, NumbersAreFinite) {
  json doc = {{"lr", 0.5}, {"neg", -0.1}, {"i", 3}, {"s", "x"}};
  doc["nan"] = std::numeric_limits<double>::quiet_NaN();  // in memory; a file holds null
  doc["inf"] = -std::numeric_limits<double>::infinity();
  const JsonField root(doc, "m.json");
  EXPECT_EQ(root["lr"].number(0.0), 0.5);
  EXPECT_EQ(root["i"].number(), 3.0);
  EXPECT_EQ(error_of([&] { root["neg"].number(0.0); }),
            "m.json: field 'neg': got -0.1, expected a finite number of at least 0");
  EXPECT_EQ(error_of([&] { root["nan"].number(); }),
            "m.json: field 'nan': got nan, expected a finite number");
  EXPECT_EQ(error_of([&] { root["inf"].number(); }),
            "m.json: field 'inf': got -inf, expected a finite number");
  EXPECT_EQ(error_of([&] { root["lr"].number(0.0, 0.25); }),
            "m.json: field 'lr': got 0.5, expected a number from 0 to 0.25");
  EXPECT_EQ(error_of([&] { root["s"].number(); }),
            "m.json: field 's': got \"x\", expected a finite number");
}

TEST(JsonField, PathsNameTheWholeWay) {
  const json doc =
      json::parse(R"({"tensors": [{"name": "a"}, {"name": 5, "shape": [1, "x"]}], "long": ")" +
                  std::string(100, 'z') + R"("})");
  const JsonField root(doc, "m.json");
  const auto tensors = root["tensors"].elements();
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors[0]["name"].string(), "a");
  EXPECT_EQ(tensors[1].name(), "m.json: field 'tensors[1]'");
  EXPECT_EQ(error_of([&] { tensors[1]["name"].string(); }),
            "m.json: field 'tensors[1].name': got 5, expected a string");
  EXPECT_EQ(error_of([&] { tensors[1]["shape"].integers(); }),
            "m.json: field 'tensors[1].shape[1]': got \"x\", expected an integer");
  EXPECT_EQ(error_of([&] { root["tensors"].object(); }),
            "m.json: field 'tensors': got an array, expected an object");
  EXPECT_EQ(error_of([&] { root["long"].boolean(); }),
            "m.json: field 'long': got \"" + std::string(39, 'z') + "..., expected true or false");
  // A string built in memory need not be UTF-8; the message must still be a strata::Error.
  const json bytes = {{"s", std::string("\xff\xfe")}};
  EXPECT_EQ(error_of([&] { JsonField(bytes, "m.json")["s"].integer(); }),
            "m.json: field 's': got \"\xEF\xBF\xBD\xEF\xBF\xBD\", expected an integer");
  EXPECT_EQ(error_of([&] { JsonField(json::array(), "m.json").object(); }),
            "m.json: got an array, expected an object");
  EXPECT_TRUE(root.has("tensors"));
  EXPECT_FALSE(root.has("step"));
  EXPECT_TRUE(root["step"].missing());
}

TEST(JsonErrorText, DropsTheLibraryPrefix) {
  try {
    json::parse("[1]").at(5);
    FAIL() << "no exception";
  } catch (const json::exception& e) {
    EXPECT_EQ(strata::core::json_error_text(e), "array index 5 is out of range");
  }
}

}  // namespace
