// OliVe outlier-victim pair encoding (olive.h).
#include "strata/quant/olive.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "strata/core/error.h"

namespace strata::quant {

namespace {

void check_bits(int bits) {
  STRATA_CHECK(bits == 4 || bits == 8, "OliVe bits ", bits, ", expected 4 or 8");
}

// One concrete format: grids, codes and the outlier threshold, all in scaled units.
struct Format {
  int bits;
  int magnitudes;  // 2^(bits-1): entries of each grid
  uint8_t id;      // the reserved identifier code, -0
  std::vector<float> normal, outlier;
  float threshold;  // scaled magnitudes above it are outliers

  Format(OliveNormalType type, int bits_)
      : bits(bits_),
        magnitudes(1 << (bits_ - 1)),
        id(uint8_t(1 << (bits_ - 1))),
        normal(olive_normal_grid(type, bits_)),
        outlier(olive_outlier_grid(type, bits_)),
        threshold(0.5f * (normal.back() + outlier.front())) {}

  // Index of the grid magnitude nearest to m >= 0 (ties: the smaller one).
  static int nearest(const std::vector<float>& grid, float m) {
    const auto it = std::lower_bound(grid.begin(), grid.end(), m);
    if (it == grid.end()) return int(grid.size()) - 1;
    const int i = int(it - grid.begin());
    return (i > 0 && m - grid[i - 1] <= *it - m) ? i - 1 : i;
  }

  uint8_t normal_code(float v) const {
    const int index = nearest(normal, std::abs(v));
    return uint8_t(index == 0 ? 0 : ((v < 0 ? id : 0) | index));  // never -0: that is the id
  }
  // `odd_slot`: the code id would read as an even-slot outlier, so avoid it (olive.h).
  uint8_t outlier_code(float v, bool odd_slot) const {
    int index = nearest(outlier, std::abs(v));
    if (v >= 0) return uint8_t(index);
    if (odd_slot && index == magnitudes - 1) --index;
    return uint8_t(id | ((index + 1) % magnitudes));
  }
  float normal_value(uint8_t code) const {
    const float m = normal[code & (id - 1)];
    return (code & id) ? -m : m;
  }
  float outlier_value(uint8_t code) const {
    if (!(code & id)) return outlier[code];
    return -outlier[((code & (id - 1)) + magnitudes - 1) % magnitudes];
  }

  // Codes of one pair of scaled values.
  void encode_pair(float a, float b, uint8_t* ca, uint8_t* cb) const {
    const bool oa = std::abs(a) > threshold, ob = std::abs(b) > threshold;
    if (oa && (!ob || std::abs(a) >= std::abs(b))) {
      *ca = outlier_code(a, false);
      *cb = id;
    } else if (ob) {
      *ca = id;
      *cb = outlier_code(b, true);
    } else {
      *ca = normal_code(a);
      *cb = normal_code(b);
    }
  }
  // Values (scaled units) of one pair of codes.
  void decode_pair(uint8_t ca, uint8_t cb, float* a, float* b) const {
    if (cb == id) {  // includes (id, id): the even slot holds the outlier
      *a = outlier_value(ca);
      *b = 0.f;
    } else if (ca == id) {
      *a = 0.f;
      *b = outlier_value(cb);
    } else {
      *a = normal_value(ca);
      *b = normal_value(cb);
    }
  }
};

// Codes, one per byte, of n (even) values at `scale`.
std::vector<uint8_t> encode_all(const Format& f, const float* x, int64_t n, float scale) {
  std::vector<uint8_t> codes(n);
  const float inv = 1.f / scale;
  for (int64_t i = 0; i < n; i += 2)
    f.encode_pair(x[i] * inv, x[i + 1] * inv, &codes[i], &codes[i + 1]);
  return codes;
}

double squared_error(const Format& f, const float* x, int64_t n, float scale,
                     const std::vector<uint8_t>& codes) {
  double err = 0.0;
  for (int64_t i = 0; i < n; i += 2) {
    float a = 0.f, b = 0.f;
    f.decode_pair(codes[i], codes[i + 1], &a, &b);
    const double da = double(x[i]) - double(scale * a), db = double(x[i + 1]) - double(scale * b);
    err += da * da + db * db;
  }
  return err;
}

// Candidate scales: quantiles of |x| mapped onto the largest normal value.
std::vector<float> candidate_scales(const float* x, int64_t n, float normal_max) {
  std::vector<float> mags(x, x + n);
  for (float& m : mags) m = std::abs(m);
  std::sort(mags.begin(), mags.end());
  std::vector<float> scales;
  for (double q : {1.0, 0.9999, 0.999, 0.995, 0.99, 0.98, 0.95, 0.9}) {
    const float m = mags[std::min<int64_t>(n - 1, int64_t(q * double(n - 1) + 0.5))];
    if (m > 0.f) scales.push_back(m / normal_max);
  }
  if (scales.empty()) scales.push_back(1.f);  // all zeros
  return scales;
}

}  // namespace

std::string to_string(OliveNormalType type) {
  return type == OliveNormalType::Int ? "int" : "flint";
}

int64_t OliveTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::vector<float> olive_normal_grid(OliveNormalType type, int bits) {
  check_bits(bits);
  const int magnitudes = 1 << (bits - 1);
  std::vector<float> grid;
  if (type == OliveNormalType::Int) {
    for (int i = 0; i < magnitudes; ++i) grid.push_back(float(i));
    return grid;
  }
  // flint: the integers below 2^(b-2), then binades [2^e, 2^(e+1)) with half as many
  // values as the binade before, the last binade having one.
  const int ints = magnitudes / 2;
  for (int i = 0; i < ints; ++i) grid.push_back(float(i));
  float start = float(ints);
  for (int values = ints / 2; int(grid.size()) < magnitudes; values = std::max(values / 2, 1)) {
    for (int j = 0; j < values && int(grid.size()) < magnitudes; ++j)
      grid.push_back(start + float(j) * start / float(values));
    start *= 2.f;
  }
  return grid;
}

std::vector<float> olive_outlier_grid(OliveNormalType type, int bits) {
  check_bits(bits);
  const int mantissa_bits = bits == 4 ? 1 : 3, magnitudes = 1 << (bits - 1);
  const int bias = int(std::floor(std::log2(olive_normal_grid(type, bits).back()))) + 1;
  std::vector<float> grid;
  for (int i = 0; i < magnitudes; ++i) {
    const int e = i >> mantissa_bits, m = i & ((1 << mantissa_bits) - 1);
    grid.push_back(std::ldexp(1.f + float(m) / float(1 << mantissa_bits), e + bias));
  }
  return grid;
}

OliveTensor olive_encode(const at::Tensor& x, const OliveOptions& options) {
  check_bits(options.bits());
  STRATA_CHECK(x.defined() && x.scalar_type() == at::kFloat && x.numel() > 0,
               "olive_encode: expected a non-empty float tensor");
  STRATA_CHECK(std::isfinite(options.scale()) && options.scale() >= 0.0, "olive_encode: scale ",
               options.scale(), ", expected a finite value > 0 (or 0 to search)");
  const at::Tensor flat = x.contiguous().view({-1});
  const int64_t n = flat.numel(), padded = n + (n % 2);
  std::vector<float> values(flat.data_ptr<float>(), flat.data_ptr<float>() + n);
  values.resize(padded, 0.f);  // the padding rule: a trailing 0 (olive.h)
  STRATA_CHECK(std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); }),
               "olive_encode: the tensor holds a non-finite value");

  std::vector<OliveNormalType> types;
  if (options.normal_type()) {
    types.push_back(*options.normal_type());
  } else {
    types = {OliveNormalType::Int, OliveNormalType::Flint};
  }
  OliveTensor out;
  out.bits = options.bits();
  out.shape = x.sizes().vec();
  std::vector<uint8_t> best_codes;
  double best_err = std::numeric_limits<double>::infinity();
  for (OliveNormalType type : types) {
    const Format f(type, options.bits());
    const std::vector<float> scales =
        options.scale() > 0 ? std::vector<float>{float(options.scale())}
                            : candidate_scales(values.data(), padded, f.normal.back());
    for (float scale : scales) {
      std::vector<uint8_t> codes = encode_all(f, values.data(), padded, scale);
      const double err = squared_error(f, values.data(), padded, scale, codes);
      if (err < best_err) {
        best_err = err;
        best_codes = std::move(codes);
        out.scale = scale;
        out.normal_type = type;
      }
    }
  }
  if (out.bits == 8) {
    out.codes = at::from_blob(best_codes.data(), {padded}, at::kByte).clone();
  } else {
    out.codes = at::empty({padded / 2}, at::kByte);
    uint8_t* p = out.codes.data_ptr<uint8_t>();
    for (int64_t i = 0; i < padded; i += 2)
      p[i / 2] = uint8_t(best_codes[i] | (best_codes[i + 1] << 4));
  }
  return out;
}

at::Tensor olive_decode(const OliveTensor& encoded) {
  const Format f(encoded.normal_type, encoded.bits);
  const int64_t n = encoded.numel(), padded = n + (n % 2);
  STRATA_CHECK(encoded.codes.numel() == (encoded.bits == 4 ? padded / 2 : padded),
               "olive_decode: ", encoded.codes.numel(), " code bytes for ", n, " values at ",
               encoded.bits, " bits");
  const at::Tensor codes = encoded.codes.contiguous();
  const uint8_t* p = codes.data_ptr<uint8_t>();
  std::vector<float> values(padded);
  for (int64_t i = 0; i < padded; i += 2) {
    const uint8_t ca = encoded.bits == 4 ? p[i / 2] & 0xF : p[i];
    const uint8_t cb = encoded.bits == 4 ? p[i / 2] >> 4 : p[i + 1];
    f.decode_pair(ca, cb, &values[i], &values[i + 1]);
  }
  at::Tensor out = at::empty({n}, at::kFloat);
  float* o = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) o[i] = encoded.scale * values[i];
  return out.view(encoded.shape);
}

}  // namespace strata::quant
