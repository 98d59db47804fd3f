// BitMoD: per-group choice among four extended FP4 / FP3 grids (bitmod.h).
#include "strata/quant/bitmod.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "strata/core/error.h"

namespace strata::quant {

namespace {

constexpr std::array<float, 8> kFp4Magnitudes = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
constexpr std::array<float, 4> kFp3Magnitudes = {0.f, 1.f, 2.f, 4.f};

void check_bits(int bits) {
  STRATA_CHECK(bits == 3 || bits == 4, "BitMoD bits ", bits, ", expected 3 or 4");
}

// The extra value of `type`: inside the widest gap (resolution) or one step beyond the
// maximum (asymmetry), with the sign the type names.
float extra_value(int bits, BitModType type) {
  const bool fp4 = bits == 4;
  switch (type) {
    case BitModType::ResolutionPos: return fp4 ? 5.f : 3.f;
    case BitModType::ResolutionNeg: return fp4 ? -5.f : -3.f;
    case BitModType::AsymmetryPos: return fp4 ? 8.f : 6.f;
    case BitModType::AsymmetryNeg: return fp4 ? -8.f : -6.f;
  }
  return 0.f;
}

// How far the grid reaches on each side: a group's scale maps its largest positive weight
// to at most `positive` and its largest negative one to at least -`negative`.
struct Reach {
  float positive, negative;
};
Reach reach_of(const std::array<float, 16>& grid) {
  Reach r{0.f, 0.f};
  for (float v : grid) {
    r.positive = std::max(r.positive, v);
    r.negative = std::max(r.negative, -v);
  }
  return r;
}

// Everything the quantizer needs about one (bits, type): the grid and its reach.
struct Candidate {
  std::array<float, 16> grid;
  Reach reach;
  int codes;  // 16 at 4 bits, 8 at 3 bits
};
Candidate candidate(int bits, BitModType type) {
  Candidate c;
  c.grid = bitmod_grid(bits, type);
  c.reach = reach_of(c.grid);
  c.codes = 1 << bits;
  return c;
}

float group_scale(const float* w, int64_t n, const Reach& reach) {
  float pos = 0.f, neg = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    pos = std::max(pos, w[i]);
    neg = std::max(neg, -w[i]);
  }
  const float scale = std::max(pos / reach.positive, neg / reach.negative);
  return scale > 0.f ? scale : 1.f;  // an all-zero group: any scale, codes all 0
}

// The code whose scaled grid value is nearest to v (ties: the lower code).
uint8_t nearest_code(float v, float scale, const Candidate& c) {
  int best = 0;
  float best_err = std::numeric_limits<float>::infinity();
  for (int code = 0; code < c.codes; ++code) {
    const float err = std::abs(v - scale * c.grid[code]);
    if (err < best_err) {
      best_err = err;
      best = code;
    }
  }
  return uint8_t(best);
}

// Quantizes one group with one candidate: writes codes (one per byte) and returns the sum
// of squared errors.
double quantize_group(const float* w, int64_t n, const Candidate& c, float* scale_out,
                      uint8_t* codes_out) {
  const float scale = group_scale(w, n, c.reach);
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t code = nearest_code(w[i], scale, c);
    const double d = double(w[i]) - double(scale * c.grid[code]);
    err += d * d;
    codes_out[i] = code;
  }
  *scale_out = scale;
  return err;
}

}  // namespace

std::string to_string(BitModType type) {
  switch (type) {
    case BitModType::ResolutionPos: return "resolution+";
    case BitModType::ResolutionNeg: return "resolution-";
    case BitModType::AsymmetryPos: return "asymmetry+";
    case BitModType::AsymmetryNeg: return "asymmetry-";
  }
  return "?";
}

std::array<float, 16> bitmod_grid(int bits, BitModType type) {
  check_bits(bits);
  std::array<float, 16> grid{};
  const int magnitudes = 1 << (bits - 1);
  for (int i = 0; i < magnitudes; ++i) {
    const float m = bits == 4 ? kFp4Magnitudes[i] : kFp3Magnitudes[i];
    grid[i] = m;
    grid[magnitudes + i] = -m;
  }
  grid[magnitudes] = extra_value(bits, type);  // the code -0
  return grid;
}

int64_t BitModTensor::storage_bytes() const {
  return codes.numel() + scales.numel() * int64_t(sizeof(float)) + types.numel();
}

BitModTensor bitmod_quantize(const at::Tensor& weight, const BitModOptions& options) {
  check_bits(options.bits());
  STRATA_CHECK(weight.defined() && weight.dim() == 2 && weight.scalar_type() == at::kFloat,
               "bitmod_quantize: expected a float [rows, cols] weight, got ",
               weight.defined() ? weight.sizes() : at::IntArrayRef{});
  const int64_t rows = weight.size(0), cols = weight.size(1), g = options.group_size();
  STRATA_CHECK(g >= 2 && g % 2 == 0, "bitmod_quantize: group size ", g,
               " must be even (two codes per byte) and at least 2");
  STRATA_CHECK(cols % g == 0, "bitmod_quantize: group size ", g,
               " does not divide the input dimension ", cols, " (weight ", weight.sizes(), ")");
  const at::Tensor w = weight.contiguous();
  const int64_t groups = cols / g;
  BitModTensor out;
  out.bits = options.bits();
  out.group_size = g;
  out.codes = at::zeros({rows, cols / 2}, at::kByte);
  out.scales = at::empty({rows, groups}, at::kFloat);
  out.types = at::empty({rows, groups}, at::kByte);
  std::array<Candidate, kBitModTypes> cands;
  for (int t = 0; t < kBitModTypes; ++t) cands[t] = candidate(options.bits(), BitModType(t));
  const float* wp = w.data_ptr<float>();
  uint8_t* codes = out.codes.data_ptr<uint8_t>();
  float* scales = out.scales.data_ptr<float>();
  uint8_t* types = out.types.data_ptr<uint8_t>();
  at::parallel_for(0, rows * groups, 16, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> trial(g), best(g);
    for (int64_t rg = begin; rg < end; ++rg) {
      const float* group = wp + rg * g;  // row r, group j: rows are contiguous groups
      double best_err = std::numeric_limits<double>::infinity();
      float best_scale = 1.f;
      int best_type = 0;
      for (int t = 0; t < kBitModTypes; ++t) {
        float scale = 1.f;
        const double err = quantize_group(group, g, cands[t], &scale, trial.data());
        if (err < best_err) {  // strict: ties keep the lower id
          best_err = err;
          best_scale = scale;
          best_type = t;
          best.swap(trial);
        }
      }
      scales[rg] = best_scale;
      types[rg] = uint8_t(best_type);
      uint8_t* dst = codes + rg * (g / 2);
      for (int64_t i = 0; i < g; i += 2) dst[i / 2] = uint8_t(best[i] | (best[i + 1] << 4));
    }
  });
  return out;
}

at::Tensor bitmod_dequantize(const BitModTensor& packed) {
  const int64_t rows = packed.rows(), cols = packed.cols(), g = packed.group_size;
  std::array<std::array<float, 16>, kBitModTypes> grids;
  for (int t = 0; t < kBitModTypes; ++t) grids[t] = bitmod_grid(packed.bits, BitModType(t));
  at::Tensor out = at::empty({rows, cols}, at::kFloat);
  const uint8_t* codes = packed.codes.contiguous().data_ptr<uint8_t>();
  const at::Tensor scales_c = packed.scales.contiguous(), types_c = packed.types.contiguous();
  const float* scales = scales_c.data_ptr<float>();
  const uint8_t* types = types_c.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  for (int64_t i = 0; i < rows * cols; ++i) {
    const int64_t rg = i / g;  // row-major: group index over all rows
    const uint8_t byte = codes[i / 2];
    const int code = (i % 2) ? byte >> 4 : byte & 0xF;
    o[i] = scales[rg] * grids[types[rg]][code];
  }
  return out;
}

double bitmod_group_error(const at::Tensor& group, int bits, BitModType type) {
  check_bits(bits);
  STRATA_CHECK(group.defined() && group.dim() == 1 && group.scalar_type() == at::kFloat,
               "bitmod_group_error: expected a 1-D float group");
  const at::Tensor g = group.contiguous();
  std::vector<uint8_t> codes(g.numel());
  float scale = 1.f;
  return quantize_group(g.data_ptr<float>(), g.numel(), candidate(bits, type), &scale,
                        codes.data());
}

}  // namespace strata::quant
