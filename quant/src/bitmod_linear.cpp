// BitModLinear: a linear layer that computes on the packed BitMoD codes (bitmod.h).
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <vector>

#include "bitmod_kernels.h"
#include "strata/core/cpu_capability.h"
#include "strata/core/error.h"
#include "strata/quant/bitmod.h"

namespace strata::quant {

namespace {

// Up to this many tokens the codes are decoded inside the dot products (every decoded
// weight is used by few tokens, so reading 4 bits per weight is what counts); above it a
// decoded tile is reused by all tokens inside at::mm.
constexpr int64_t kGemvMaxTokens = 8;
// Output rows per decoded tile: 128 rows of 3072 floats is 1.5 MiB, about an L2; 64 and
// 256 measured no better at 128 tokens (bench_quant, busy machine).
constexpr int64_t kTileRows = 128;

// The AVX-512 kernels decode 16 codes to one register: groups of a multiple of 16.
bool use_avx512(const BitModLinearOptions& options, const BitModTensor& packed) {
  return !options.portable() && core::cpu_capability().avx512 && packed.group_size % 16 == 0;
}

}  // namespace

BitModLinearImpl::BitModLinearImpl(const at::Tensor& weight, const at::Tensor& bias_,
                                   const BitModLinearOptions& options_)
    : options(options_) {
  const at::Tensor w = weight.detach().to(at::kFloat);
  packed = bitmod_quantize(w, options.quant());
  packed.codes = register_buffer("codes", packed.codes);
  packed.scales = register_buffer("scales", packed.scales);
  packed.types = register_buffer("types", packed.types);
  if (bias_.defined()) {
    STRATA_CHECK(bias_.dim() == 1 && bias_.size(0) == w.size(0), "BitModLinear: bias of shape ",
                 bias_.sizes(), ", expected [", w.size(0), "]");
    bias = register_buffer("bias", bias_.detach().to(at::kFloat).contiguous());
  }
}

BitModLinearImpl::BitModLinearImpl(const torch::nn::Linear& linear,
                                   const BitModLinearOptions& options_)
    : BitModLinearImpl(linear->weight, linear->bias, options_) {}

std::string BitModLinearImpl::kernel(int64_t tokens) const {
  const bool avx512 = use_avx512(options, packed);
  return std::string(avx512 ? "avx512" : "portable") +
         (tokens <= kGemvMaxTokens ? "-gemv" : "-tile+mm");
}

at::Tensor BitModLinearImpl::forward(const at::Tensor& input) {
  const int64_t in = packed.cols(), out = packed.rows();
  STRATA_CHECK(input.defined() && input.dim() >= 1 && input.size(-1) == in,
               "BitModLinear: input of shape ", input.defined() ? input.sizes() : at::IntArrayRef{},
               ", expected [..., ", in, "]");
  STRATA_CHECK(input.scalar_type() == at::kFloat, "BitModLinear: expected a float32 input, got ",
               input.scalar_type());
  const at::Tensor x = input.reshape({-1, in}).contiguous();
  const int64_t tokens = x.size(0);
  std::vector<int64_t> out_shape = input.sizes().vec();
  out_shape.back() = out;

  std::array<float, 16 * kBitModTypes> tables;
  for (int t = 0; t < kBitModTypes; ++t) {
    const auto grid = bitmod_grid(packed.bits, BitModType(t));
    std::copy(grid.begin(), grid.end(), tables.begin() + 16 * t);
  }
  const detail::BitModView w{packed.codes.data_ptr<uint8_t>(),
                             packed.scales.data_ptr<float>(),
                             packed.types.data_ptr<uint8_t>(),
                             tables.data(),
                             out,
                             in,
                             packed.group_size};
  const bool avx512 = use_avx512(options, packed);

  at::Tensor y;
  if (tokens <= kGemvMaxTokens) {
    y = at::empty({tokens, out}, at::kFloat);
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, out, 64, [&](int64_t begin, int64_t end) {
      if (avx512)
        detail::bitmod_gemv_avx512(w, xp, tokens, yp, out, begin, end);
      else
        detail::bitmod_gemv_portable(w, xp, tokens, yp, out, begin, end);
    });
  } else {
    // y^T [out, tokens], tile by tile: each tile of rows is contiguous in y^T.
    const at::Tensor yt = at::empty({out, tokens}, at::kFloat);
    const at::Tensor xt = x.t();
    const int64_t tiles = (out + kTileRows - 1) / kTileRows;
    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
      at::Tensor tile = at::empty({kTileRows, in}, at::kFloat);
      for (int64_t i = begin; i < end; ++i) {
        const int64_t r0 = i * kTileRows, rows = std::min(kTileRows, out - r0);
        if (avx512)
          detail::bitmod_decode_avx512(w, r0, r0 + rows, tile.data_ptr<float>());
        else
          detail::bitmod_decode_portable(w, r0, r0 + rows, tile.data_ptr<float>());
        at::Tensor dst = yt.narrow(0, r0, rows);
        at::mm_out(dst, tile.narrow(0, 0, rows), xt);
      }
    });
    y = yt.t().contiguous();
  }
  if (bias.defined()) y.add_(bias);
  return y.view(out_shape);
}

}  // namespace strata::quant
