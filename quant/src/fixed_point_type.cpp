// FixedPointType: validation, the type-string parser and its inverse.
#include <algorithm>
#include <array>
#include <cctype>
#include <utility>
#include <vector>

#include "strata/core/error.h"
#include "strata/quant/fixed_point.h"

namespace strata::quant {
namespace {

constexpr std::array<std::pair<QuantMode, const char*>, 7> kQuantNames{{
    {QuantMode::AP_TRN, "AP_TRN"},
    {QuantMode::AP_TRN_ZERO, "AP_TRN_ZERO"},
    {QuantMode::AP_RND, "AP_RND"},
    {QuantMode::AP_RND_ZERO, "AP_RND_ZERO"},
    {QuantMode::AP_RND_MIN_INF, "AP_RND_MIN_INF"},
    {QuantMode::AP_RND_INF, "AP_RND_INF"},
    {QuantMode::AP_RND_CONV, "AP_RND_CONV"},
}};

constexpr std::array<std::pair<OverflowMode, const char*>, 5> kOverflowNames{{
    {OverflowMode::AP_WRAP, "AP_WRAP"},
    {OverflowMode::AP_SAT, "AP_SAT"},
    {OverflowMode::AP_SAT_ZERO, "AP_SAT_ZERO"},
    {OverflowMode::AP_SAT_SYM, "AP_SAT_SYM"},
    {OverflowMode::AP_WRAP_SM, "AP_WRAP_SM"},
}};

template <typename Names>
std::string joined(const Names& names) {
  std::string out;
  for (const auto& [mode, name] : names) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Edits (insert, delete, replace, swap two neighbours) that turn a into b: a swapped
// pair such as AP_RDN counts once, so it suggests AP_RND rather than AP_TRN.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean X?)" when one of `names` is close enough to `word` to be a typo
// (case is ignored: "ap_rnd" suggests AP_RND).
std::string suggestion(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& name : names) {
    const size_t d = edit_distance(upper(word), upper(name));
    if (d < best_distance) best_distance = d, best = name;
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

template <typename Names>
std::vector<std::string> names_of(const Names& names) {
  std::vector<std::string> out;
  for (const auto& [mode, name] : names) out.push_back(name);
  return out;
}

// A recursive-descent reader of one type string; every failure names the string.
class TypeParser {
 public:
  explicit TypeParser(const std::string& text) : text_(text) {}

  FixedPointType parse() {
    FixedPointType t;
    const std::string name = word();
    if (name == "ap_fixed" || name == "ap_ufixed") {
      t.is_signed = name == "ap_fixed";
    } else {
      fail((name.empty() ? "expected"
                         : "unknown type '" + name + "'" +
                               suggestion(name, {"ap_fixed", "ap_ufixed"}) + ", expected") +
           " ap_fixed<W,I,Q,O,N> or ap_ufixed<W,I,Q,O,N>");
    }
    expect('<', "after " + name);
    t.width = integer("the width W");
    expect(',', "after the width (ap_fixed<W,I,...> needs both W and I)");
    t.integer_bits = integer("the integer bits I");
    if (eat(',')) t.quant = quant_mode();
    if (eat(',')) t.overflow = overflow_mode();
    if (eat(',')) t.saturation_bits = integer("the saturation bits N");
    if (eat(',')) fail("too many parameters, expected at most <W,I,Q,O,N>");
    skip_spaces();
    if (pos_ == text_.size()) fail("missing '>' at the end");
    expect('>', "to close the parameter list");
    skip_spaces();
    if (pos_ != text_.size()) fail("unexpected '" + text_.substr(pos_) + "' after '>'");
    try {
      validate(t);
    } catch (const Error& e) {
      fail(e.what());
    }
    return t;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    STRATA_FAIL("type '", text_, "': ", problem);
  }

  void skip_spaces() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }

  bool eat(char c) {
    skip_spaces();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  std::string found() const {
    return pos_ < text_.size() ? "found '" + text_.substr(pos_, 1) + "'" : "found the end";
  }

  void expect(char c, const std::string& where) {
    if (!eat(c)) fail(std::string("expected '") + c + "' " + where + ", " + found());
  }

  std::string word() {
    skip_spaces();
    const size_t start = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) {
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  int integer(const std::string& what) {
    skip_spaces();
    const size_t start = pos_;
    if (pos_ < text_.size() && (text_[pos_] == '-' || text_[pos_] == '+')) ++pos_;
    const size_t digits = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    if (pos_ == digits) fail("expected an integer for " + what + ", " + found());
    if (pos_ - digits > 9) fail(what + " " + text_.substr(start, pos_ - start) + " is too large");
    return std::stoi(text_.substr(start, pos_ - start));
  }

  QuantMode quant_mode() {
    const std::string name = word();
    for (const auto& [mode, spelling] : kQuantNames) {
      if (name == spelling) return mode;
    }
    for (const auto& [mode, spelling] : kOverflowNames) {
      if (name == spelling) {
        fail(name +
             " is an overflow mode, but the quantization mode comes first: "
             "ap_fixed<W,I,Q,O,N> (Q one of " +
             joined(kQuantNames) + ")");
      }
    }
    fail((name.empty() ? "expected a quantization mode, " + found()
                       : "unknown quantization mode '" + name + "'" +
                             suggestion(name, names_of(kQuantNames))) +
         ", expected one of " + joined(kQuantNames));
  }

  OverflowMode overflow_mode() {
    const std::string name = word();
    for (const auto& [mode, spelling] : kOverflowNames) {
      if (name == spelling) return mode;
    }
    fail((name.empty() ? "expected an overflow mode, " + found()
                       : "unknown overflow mode '" + name + "'" +
                             suggestion(name, names_of(kOverflowNames))) +
         ", expected one of " + joined(kOverflowNames));
  }

  const std::string& text_;
  size_t pos_ = 0;
};

FixedPointType make_type(int width, int integer_bits, bool is_signed, QuantMode quant,
                         OverflowMode overflow, int saturation_bits) {
  FixedPointType t{width, integer_bits, is_signed, quant, overflow, saturation_bits};
  validate(t);
  return t;
}

}  // namespace

bool FixedPointType::operator==(const FixedPointType& o) const {
  return width == o.width && integer_bits == o.integer_bits && is_signed == o.is_signed &&
         quant == o.quant && overflow == o.overflow && saturation_bits == o.saturation_bits;
}

FixedPointType ap_fixed(int width, int integer_bits, QuantMode quant, OverflowMode overflow,
                        int saturation_bits) {
  return make_type(width, integer_bits, true, quant, overflow, saturation_bits);
}

FixedPointType ap_ufixed(int width, int integer_bits, QuantMode quant, OverflowMode overflow,
                         int saturation_bits) {
  return make_type(width, integer_bits, false, quant, overflow, saturation_bits);
}

void validate(const FixedPointType& t) {
  STRATA_CHECK(t.width >= 1 && t.width <= kMaxFixedWidth, "width W=", t.width,
               " out of range, expected 1 to ", kMaxFixedWidth);
  STRATA_CHECK(t.integer_bits >= -kMaxIntegerBits && t.integer_bits <= kMaxIntegerBits,
               "integer bits I=", t.integer_bits, " out of range, expected ", -kMaxIntegerBits,
               " to ", kMaxIntegerBits);
  STRATA_CHECK(t.saturation_bits >= 0 && t.saturation_bits <= t.width,
               "saturation bits N=", t.saturation_bits, " out of range, expected 0 to W=", t.width);
  STRATA_CHECK(t.is_signed || t.overflow != OverflowMode::AP_WRAP_SM,
               "AP_WRAP_SM needs a signed type (HLS refuses ap_ufixed with AP_WRAP_SM)");
}

FixedPointType parse_fixed_point_type(const std::string& text) { return TypeParser(text).parse(); }

std::string to_string(QuantMode mode) {
  for (const auto& [m, name] : kQuantNames) {
    if (m == mode) return name;
  }
  STRATA_FAIL("unknown QuantMode ", static_cast<int>(mode));
}

std::string to_string(OverflowMode mode) {
  for (const auto& [m, name] : kOverflowNames) {
    if (m == mode) return name;
  }
  STRATA_FAIL("unknown OverflowMode ", static_cast<int>(mode));
}

std::string to_string(const FixedPointType& t) {
  std::string out = (t.is_signed ? "ap_fixed<" : "ap_ufixed<") + std::to_string(t.width) + "," +
                    std::to_string(t.integer_bits);
  const bool default_n = t.saturation_bits == 0;
  const bool default_o = default_n && t.overflow == OverflowMode::AP_WRAP;
  if (!default_o || t.quant != QuantMode::AP_TRN) out += "," + to_string(t.quant);
  if (!default_o) out += "," + to_string(t.overflow);
  if (!default_n) out += "," + std::to_string(t.saturation_bits);
  return out + ">";
}

}  // namespace strata::quant
