// strata-quant: HLS fixed-point emulation from the command line, for checking a design
// by hand.
//
//   strata-quant cast --type 'ap_fixed<8,3,AP_RND,AP_SAT>' --values 1.25,-0.75,3.99
//   echo "0.1 0.2 0x1p-7" | strata-quant cast --type 'ap_ufixed<4,0>' --raw
//   strata-quant type --type 'ap_fixed<8,3>'
//
// cast prints one line per value: the cast value as its exact decimal expansion (a
// fixed-point value always has one), and with --raw the raw integer V after a space
// (value = V * 2^-F). Values are read with strtod: decimals, hex floats, inf, nan.
// type prints the canonical type string, its width, integer and fraction bits, min, max
// and resolution. Later subcommands (export, ...) go next to these.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "strata/core/error.h"
#include "strata/programs/cli.h"
#include "strata/quant/fixed_point.h"

namespace {

namespace quant = strata::quant;

double parse_value(const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(begin, &end);
  STRATA_CHECK(end != begin && *end == '\0', "value '", text, "': not a number");
  // An overflowing decimal reads as +-inf, which the cast handles like HLS does, but
  // the user most likely mistyped it: say so rather than print a saturated value.
  STRATA_CHECK(errno != ERANGE || std::abs(v) < 1, "value '", text, "': out of double range");
  return v;
}

// Values from --values, or else whitespace- or comma-separated from stdin.
std::vector<double> read_values(const std::vector<std::string>& flags) {
  std::vector<std::string> words = flags;
  if (words.empty()) {
    std::string word;
    while (std::cin >> word) {
      std::stringstream parts(word);
      std::string part;
      while (std::getline(parts, part, ',')) {
        if (!part.empty()) words.push_back(part);
      }
    }
  }
  std::vector<double> values;
  for (const auto& word : words) values.push_back(parse_value(word));
  return values;
}

std::string raw_string(int64_t raw, const quant::FixedPointType& t) {
  if (!t.is_signed && t.width == 64) return std::to_string(static_cast<uint64_t>(raw));
  return std::to_string(raw);
}

int cast(const std::string& type_text, const std::vector<std::string>& value_flags, bool raw) {
  const quant::FixedPointType t = quant::parse_fixed_point_type(type_text);
  for (const double v : read_values(value_flags)) {
    const int64_t bits = quant::fixed_point_cast_raw(v, t);
    std::cout << quant::fixed_to_decimal(bits, t);
    if (raw) std::cout << ' ' << raw_string(bits, t);
    std::cout << '\n';
  }
  return 0;
}

int describe(const std::string& type_text) {
  const quant::FixedPointType t = quant::parse_fixed_point_type(type_text);
  const int w = t.width;
  // The extreme raw integers as int64 patterns (see fixed_point.h on ap_ufixed<64,...>).
  const uint64_t top = w == 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1;
  const int64_t min = t.is_signed ? static_cast<int64_t>(~(top >> 1)) : 0;
  const int64_t max = static_cast<int64_t>(t.is_signed ? top >> 1 : top);
  std::cout << quant::to_string(t) << "\n"
            << "width " << w << ", integer bits " << t.integer_bits << ", fraction bits "
            << t.fraction_bits() << ", " << (t.is_signed ? "signed" : "unsigned") << "\n"
            << "min " << quant::fixed_to_decimal(min, t) << "\n"
            << "max " << quant::fixed_to_decimal(max, t) << "\n"
            << "lsb " << quant::fixed_to_decimal(1, t) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    CLI::App app{"HLS ap_fixed / ap_ufixed emulation: cast values, describe types."};
    strata::programs::configure_cli(app);
    app.require_subcommand(1);

    std::string type_text;
    std::vector<std::string> values;
    bool raw = false;
    CLI::App* cast_cmd =
        app.add_subcommand("cast", "Cast values to a fixed-point type, one per line");
    cast_cmd->add_option("--type", type_text, "e.g. 'ap_fixed<8,3,AP_RND,AP_SAT>'")->required();
    cast_cmd->add_option("--values", values, "Comma-separated values (default: read stdin)")
        ->delimiter(',');
    cast_cmd->add_flag("--raw", raw, "Also print the raw integer V (value = V * 2^-F)");

    CLI::App* type_cmd = app.add_subcommand("type", "Print a type's range and resolution");
    type_cmd->add_option("--type", type_text, "e.g. 'ap_ufixed<4,0>'")->required();

    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    if (cast_cmd->parsed()) return cast(type_text, values, raw);
    return describe(type_text);
  });
}
