#include "strata/moe/compressed_expert.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "compressed_expert_kernels.h"
#include "strata/core/cpu_capability.h"
#include "strata/core/error.h"

namespace strata::moe {

namespace {

// Tokens per call of the batch kernel: its transposed input block, (cols + 32) x 32
// floats, stays in L2 for expert widths up to a few thousand.
constexpr int64_t kBatchTokens = 32;
// Work per task of at::parallel_for, in codewords times tokens: about 20 us. Waking the
// intra-op threads costs more than a small expert's whole matvec (256 x 512: ~20 us on
// one thread, 2.5x that on two; bench_qmoe), so small products run on one thread.
constexpr int64_t kWorkPerTask = 8192;

// Rows per task for `tokens` tokens.
int64_t row_grain(const TernaryMatrix& w, int64_t tokens) {
  const int64_t work = std::max<int64_t>(1, w.codes.size(0) * tokens);
  return std::max<int64_t>(1, (kWorkPerTask * w.rows + work - 1) / work);
}

detail::TernaryView view_of(const TernaryMatrix& w, const at::Tensor& levels) {
  const TernaryDictionary& dict = w.dictionary();
  static_assert(sizeof(detail::CodewordMasks) == 4 * sizeof(uint16_t));
  return {reinterpret_cast<const uint16_t*>(w.codes.data_ptr<int16_t>()),
          w.row_offsets.data_ptr<int32_t>(),
          levels.data_ptr<float>(),
          w.rows,
          w.cols,
          dict.decode_table.data(),
          reinterpret_cast<const detail::CodewordMasks*>(dict.masks.data()),
          dict.digits.data()};
}

void matvec(const detail::TernaryView& w, int64_t grain, TernaryKernel kernel, const float* x,
            float* y) {
  at::parallel_for(0, w.rows, grain, [&](int64_t begin, int64_t end) {
    switch (kernel) {
      case TernaryKernel::Reference: detail::ternary_matvec_reference(w, x, y, begin, end); break;
      case TernaryKernel::Avx512: detail::ternary_matvec_avx512(w, x, y, begin, end); break;
      default: detail::ternary_matvec_portable(w, x, y, begin, end); break;
    }
  });
}

}  // namespace

std::string to_string(TernaryKernel kernel) {
  switch (kernel) {
    case TernaryKernel::Auto: return "auto";
    case TernaryKernel::Reference: return "reference";
    case TernaryKernel::Portable: return "portable";
    case TernaryKernel::Avx512: return "avx512";
  }
  return "?";
}

TernaryKernel resolve_kernel(TernaryKernel kernel) {
  const core::CpuCapability cpu = core::cpu_capability();
  if (kernel == TernaryKernel::Auto)
    return cpu.avx512 ? TernaryKernel::Avx512 : TernaryKernel::Portable;
  STRATA_CHECK(kernel != TernaryKernel::Avx512 || cpu.avx512,
               "ternary kernel avx512: needs AVX-512F/BW/VL/DQ, the CPU capability is ",
               core::to_string(cpu), " (", core::kCpuCapabilityEnv, " may lower it)");
  return kernel;
}

at::Tensor ternary_masks(const TernaryMatrix& w) {
  const at::Tensor codes = ternary_decode_codes(w);  // checks w
  const int64_t words = (w.cols + 15) / 16;
  at::Tensor masks = at::zeros({w.rows, 2, words}, at::kShort);
  uint16_t* out = reinterpret_cast<uint16_t*>(masks.data_ptr<int16_t>());
  const uint8_t* c = codes.data_ptr<uint8_t>();
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t k = 0; k < w.cols; ++k) {
      const uint8_t code = c[r * w.cols + k];
      if (code != 0) out[(2 * r + code - 1) * words + k / 16] |= uint16_t(1u << (k % 16));
    }
  }
  return masks;
}

at::Tensor ternary_linear(const TernaryMatrix& w, const at::Tensor& levels, const at::Tensor& x,
                          TernaryKernel kernel_in, const at::Tensor& masks) {
  STRATA_CHECK(x.dim() == 2 && x.size(1) == w.cols, "compressed linear: input of shape ", x.sizes(),
               ", expected [n, ", w.cols, "]");
  STRATA_CHECK(x.scalar_type() == at::kFloat, "compressed linear: expected a float32 input, got ",
               x.scalar_type());
  STRATA_CHECK(levels.scalar_type() == at::kFloat && levels.is_contiguous() &&
                   levels.sizes() == at::IntArrayRef({w.rows, 2}),
               "compressed linear: levels must be a contiguous float [", w.rows, ", 2] tensor");
  const TernaryKernel kernel = resolve_kernel(kernel_in);
  const int64_t words = (w.cols + 15) / 16;
  STRATA_CHECK(!masks.defined() || (masks.scalar_type() == at::kShort && masks.is_contiguous() &&
                                    masks.sizes() == at::IntArrayRef({w.rows, 2, words})),
               "compressed linear: masks must be ternary_masks(w), a contiguous int16 [", w.rows,
               ", 2, ", words, "] tensor");
  const detail::TernaryView view = view_of(w, levels);
  const int64_t n = x.size(0), cols = w.cols;
  at::Tensor y = at::empty({n, w.rows}, at::kFloat);
  if (n == 0) return y;
  const at::Tensor xc = x.contiguous();
  const float* xp = xc.data_ptr<float>();
  float* yp = y.data_ptr<float>();

  if (n == 1 || kernel == TernaryKernel::Reference) {
    // The kernels read up to 32 floats past a row's last column: copy x into a padded
    // buffer (reused by this thread: a matvec is a few microseconds).
    thread_local std::vector<float> padded;
    padded.assign(static_cast<size_t>(cols + detail::kInputPadding), 0.f);
    const bool on_masks = masks.defined() && kernel != TernaryKernel::Reference;
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(padded.data(), xp + t * cols, sizeof(float) * cols);
      if (!on_masks) {
        matvec(view, row_grain(w, 1), kernel, padded.data(), yp + t * w.rows);
        continue;
      }
      const uint16_t* m = reinterpret_cast<const uint16_t*>(masks.data_ptr<int16_t>());
      // Taken here: inside the lambda `padded` would name the worker thread's own buffer.
      const float* xpad = padded.data();
      float* yt = yp + t * w.rows;
      // 2 masked adds per 16 weights, about the work of 2 codewords of the stream.
      const int64_t grain = std::max<int64_t>(1, kWorkPerTask / std::max<int64_t>(1, words));
      at::parallel_for(0, w.rows, grain, [&](int64_t begin, int64_t end) {
        if (kernel == TernaryKernel::Avx512)
          detail::ternary_matvec_masks_avx512(m, words, view.levels, xpad, yt, begin, end);
        else
          detail::ternary_matvec_masks_portable(m, words, view.levels, xpad, yt, begin, end);
      });
    }
    return y;
  }
  std::vector<float> xt(static_cast<size_t>((cols + detail::kInputPadding) * kBatchTokens));
  for (int64_t t0 = 0; t0 < n; t0 += kBatchTokens) {
    const int64_t batch = std::min(kBatchTokens, n - t0);
    std::fill(xt.begin(), xt.end(), 0.f);
    for (int64_t t = 0; t < batch; ++t)
      for (int64_t k = 0; k < cols; ++k) xt[k * batch + t] = xp[(t0 + t) * cols + k];
    float* yb = yp + t0 * w.rows;
    at::parallel_for(0, w.rows, row_grain(w, batch), [&](int64_t begin, int64_t end) {
      if (kernel == TernaryKernel::Avx512)
        detail::ternary_matmul_avx512(view, xt.data(), batch, yb, w.rows, begin, end);
      else
        detail::ternary_matmul_portable(view, xt.data(), batch, yb, w.rows, begin, end);
    });
  }
  return y;
}

CompressedLinearImpl::CompressedLinearImpl(TernaryMatrix weight_in, const at::Tensor& bias_in,
                                           const CompressedLinearOptions& options_)
    : options(options_), weight(std::move(weight_in)) {
  check_ternary_matrix(weight, "CompressedLinear: weight");
  weight.codes = register_buffer("codes", weight.codes);
  weight.row_offsets = register_buffer("row_offsets", weight.row_offsets);
  weight.levels = register_buffer("levels", weight.levels);
  levels_float_ = weight.levels.to(at::kFloat).contiguous();
  if (options.matvec_masks()) masks_ = ternary_masks(weight);
  if (bias_in.defined()) {
    STRATA_CHECK(bias_in.dim() == 1 && bias_in.size(0) == weight.rows,
                 "CompressedLinear: bias of shape ", bias_in.sizes(), ", expected [", weight.rows,
                 "]");
    bias = register_buffer("bias", bias_in.detach().to(at::kFloat).contiguous());
  }
}

at::Tensor CompressedLinearImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == weight.cols, "CompressedLinear: input of shape ",
               x.sizes(), ", expected [..., ", weight.cols, "]");
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = weight.rows;
  at::Tensor y =
      ternary_linear(weight, levels_float_, x.reshape({-1, weight.cols}), options.kernel(), masks_);
  if (bias.defined()) y.add_(bias);
  return y.view(out_shape);
}

CompressedExpertFfnImpl::CompressedExpertFfnImpl(TernaryMatrix w_in, const at::Tensor& b_in,
                                                 TernaryMatrix w_out, const at::Tensor& b_out,
                                                 const CompressedLinearOptions& options) {
  STRATA_CHECK(w_in.cols == w_out.rows && w_in.rows == w_out.cols, "CompressedExpertFfn: w_in [",
               w_in.rows, ", ", w_in.cols, "] and w_out [", w_out.rows, ", ", w_out.cols,
               "], expected [hidden, d] and [d, hidden]");
  in = register_module("in", CompressedLinear(std::move(w_in), b_in, options));
  out = register_module("out", CompressedLinear(std::move(w_out), b_out, options));
}

at::Tensor CompressedExpertFfnImpl::forward(const at::Tensor& x) {
  return out->forward(at::gelu(in->forward(x)));
}

CompressedExpertsImpl::CompressedExpertsImpl(std::vector<CompressedExpertFfn> experts_in)
    : experts(std::move(experts_in)) {
  STRATA_CHECK(!experts.empty(), "CompressedExperts: no experts");
  for (size_t e = 0; e < experts.size(); ++e) {
    STRATA_CHECK(
        experts[e]->in->weight.cols == model_dim() && experts[e]->in->weight.rows == hidden_dim(),
        "CompressedExperts: expert ", e, " has w_in [", experts[e]->in->weight.rows, ", ",
        experts[e]->in->weight.cols, "], expected [", hidden_dim(), ", ", model_dim(), "]");
    register_module(std::to_string(e), experts[e]);
  }
}

at::Tensor CompressedExpertsImpl::forward(int64_t expert, const at::Tensor& x) {
  STRATA_CHECK(expert >= 0 && expert < size(), "CompressedExperts: expert ", expert,
               ", expected 0 to ", size() - 1);
  return experts[expert]->forward(x);
}

int64_t CompressedExpertsImpl::model_dim() const { return experts[0]->in->weight.cols; }
int64_t CompressedExpertsImpl::hidden_dim() const { return experts[0]->in->weight.rows; }

int64_t CompressedExpertsImpl::weight_bytes() const {
  int64_t bytes = 0;
  for (const auto& e : experts) bytes += e->in->weight.nbytes() + e->out->weight.nbytes();
  return bytes;
}

double CompressedExpertsImpl::bits_per_weight() const {
  return 8.0 * double(weight_bytes()) / double(2 * size() * model_dim() * hidden_dim());
}

}  // namespace strata::moe
