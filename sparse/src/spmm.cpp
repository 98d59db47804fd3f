#include "strata/sparse/spmm.h"
#include <ATen/Parallel.h>
#include "strata/core/cpu_capability.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace strata::sparse {

namespace {

// What the kernels may use: the CPU's capability (STRATA_CPU_CAPABILITY applied), none
// when the options ask for the portable path.
core::CpuCapability capability(const SpmmOptions& o) {
  return o.portable() ? core::CpuCapability{} : core::cpu_capability();
}

bool vector_block16(const BlockSparse& w, const SpmmOptions& o) {
  return capability(o).avx512 && w.layout.shape.out == 16;
}
bool vector_int8(const Int8BlockSparse& w, const SpmmOptions& o) {
  return capability(o).avx512_vnni && w.layout.shape.out == 1 && w.layout.shape.in % 4 == 0;
}
bool vector_rows(const SpmmOptions& o) { return capability(o).avx512; }
bool vector_bf16(const Bf16BlockSparse& w, const SpmmOptions& o) {
  return capability(o).avx512_bf16 && w.layout.shape.out == 16;
}

// x as contiguous float [tokens, in].
at::Tensor checked_input(const at::Tensor& x, int64_t in, const char* what, bool bf16_ok = false) {
  STRATA_CHECK(x.defined() && x.dim() == 2, what, ": expected input [tokens, in], got ",
               x.defined() ? x.sizes() : at::IntArrayRef{});
  STRATA_CHECK(x.scalar_type() == at::kFloat || (bf16_ok && x.scalar_type() == at::kBFloat16), what,
               ": expected a float32", bf16_ok ? " or bfloat16" : "", " input, got ",
               x.scalar_type());
  STRATA_CHECK(x.size(1) == in, what, ": input has ", x.size(1), " features, the weight expects ",
               in);
  return x.contiguous();
}

// Runs f(begin, end) over [0, units) on LibTorch's intra-op threads. Units are handed out
// in small chunks from a shared counter rather than split evenly up front: on a shared
// machine one thread may be slowed down, and the others then take over its share.
template <typename F>
void parallel_units(int64_t units, F&& f) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), units);
  if (threads <= 1 || at::in_parallel_region()) {
    if (units > 0) f(0, units);
    return;
  }
  const int64_t chunk = std::max<int64_t>(1, units / (threads * 8));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t b; (b = next.fetch_add(chunk)) < units;) f(b, std::min(units, b + chunk));
  });
}

// x [tokens, in] (contiguous, 4-byte or 1-byte elements) in groups of 16 tokens, `cols`
// 32-bit words per token (zero padded): see detail::pack16_avx512.
at::Tensor pack(const at::Tensor& x, int64_t cols) {
  const int64_t tokens = x.size(0);
  at::Tensor out =
      at::empty({detail::ceil_div(tokens, detail::kGroup) * cols * detail::kGroup}, at::kInt);
  const int64_t row_bytes = x.size(1) * x.element_size();
  const uint8_t* src = static_cast<const uint8_t*>(x.data_ptr());
  uint32_t* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  parallel_units(detail::ceil_div(tokens, detail::kGroup), [&](int64_t b, int64_t e) {
    const int64_t first = b * detail::kGroup, rows = std::min(tokens, e * detail::kGroup) - first;
    detail::pack16_avx512(src + first * row_bytes, rows, row_bytes, row_bytes, cols,
                          dst + b * cols * detail::kGroup);
  });
  return out;
}

detail::BlockView view_of(const BlockLayout& l, const at::Tensor& values) {
  return {l.block_ptr.data_ptr<int64_t>(),
          l.block_col.data_ptr<int32_t>(),
          values.data_ptr(),
          l.shape.in,
          l.shape.out,
          l.out_features,
          l.in_padded,
          l.block_rows()};
}

// Portable block product: y[t, o] += v * x[t, k] over the stored blocks, in block order.
template <typename Acc, typename V, typename X>
void portable_block(const BlockLayout& l, const V* values, const X* x, int64_t tokens, Acc* y) {
  const int64_t bi = l.shape.in, bo = l.shape.out, in = l.in_features, out = l.out_features;
  const int64_t* ptr = l.block_ptr.data_ptr<int64_t>();
  const int32_t* col = l.block_col.data_ptr<int32_t>();
  std::fill(y, y + tokens * out, Acc(0));
  parallel_units(l.block_rows(), [&](int64_t begin, int64_t end) {
    for (int64_t rb = begin; rb < end; ++rb)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t b = ptr[rb]; b < ptr[rb + 1]; ++b)
          for (int64_t i = 0; i < bi; ++i) {
            const int64_t k = int64_t(col[b]) * bi + i;
            if (k >= in) break;
            const Acc xv = Acc(x[t * in + k]);
            for (int64_t j = 0; j < bo && rb * bo + j < out; ++j)
              y[t * out + rb * bo + j] += Acc(values[(b * bi + i) * bo + j]) * xv;
          }
  });
}

// Portable CSR / N:M rows.
void portable_rows(const detail::RowsView& w, const float* x, int64_t tokens, int64_t in,
                   float* y) {
  parallel_units(w.out, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t t = 0; t < tokens; ++t) {
        const float* xt = x + t * in;
        float acc = 0;
        if (w.index == nullptr) {
          for (int64_t j = w.row_ptr[o]; j < w.row_ptr[o + 1]; ++j)
            acc += w.values[j] * xt[w.col[j]];
        } else {
          for (int64_t g = 0; g < w.groups; ++g)
            for (int64_t s = 0; s < w.n; ++s) {
              const int64_t j = (o * w.groups + g) * w.n + s;
              const int64_t k = g * w.m + w.index[j];
              if (k < in) acc += w.values[j] * xt[k];
            }
        }
        y[t * w.out + o] = acc;
      }
  });
}

at::Tensor rows_spmm(const detail::RowsView& w, const at::Tensor& x, const SpmmOptions& o) {
  const int64_t tokens = x.size(0);
  at::Tensor y = at::empty({tokens, w.out}, x.options());
  if (tokens == 0 || w.out == 0) return y.zero_();
  float* yp = y.data_ptr<float>();
  if (vector_rows(o)) {
    const at::Tensor xp = pack(x, w.in_padded);
    const float* xpp = reinterpret_cast<const float*>(xp.data_ptr<int32_t>());
    parallel_units(detail::row_units(w.out, tokens), [&](int64_t b, int64_t e) {
      detail::rows_f32_avx512(w, xpp, tokens, yp, b, e);
    });
  } else {
    portable_rows(w, x.data_ptr<float>(), tokens, x.size(1), yp);
  }
  return y;
}

void check_int8_in(const Int8BlockSparse& w) {
  // |sum of q_w * (q_x - zero)| <= 127 * 255 * in must fit int32.
  STRATA_CHECK(w.layout.in_features <= 65536, "Int8BlockSparse: in_features ", w.layout.in_features,
               " exceeds 65536, where int32 accumulators could overflow");
}

}  // namespace

at::Tensor spmm(const BlockSparse& w, const at::Tensor& x_in, const SpmmOptions& o) {
  const BlockLayout& l = w.layout;
  const at::Tensor x = checked_input(x_in, l.in_features, "spmm(BlockSparse)");
  const int64_t tokens = x.size(0);
  at::Tensor y = at::empty({tokens, l.out_features}, x.options());
  if (tokens == 0 || l.out_features == 0) return y.zero_();
  if (vector_block16(w, o)) {
    const at::Tensor xp = pack(x, l.in_padded);
    const detail::BlockView v = view_of(l, w.values);
    const float* xpp = reinterpret_cast<const float*>(xp.data_ptr<int32_t>());
    float* yp = y.data_ptr<float>();
    parallel_units(detail::block16_f32_units(v, tokens), [&](int64_t b, int64_t e) {
      detail::block16_f32_avx512(v, xpp, tokens, yp, b, e);
    });
  } else {
    portable_block<float>(l, w.values.data_ptr<float>(), x.data_ptr<float>(), tokens,
                          y.data_ptr<float>());
  }
  return y;
}

at::Tensor spmm(const Bf16BlockSparse& w, const at::Tensor& x_in, const SpmmOptions& o) {
  const BlockLayout& l = w.layout;
  const at::Tensor x =
      checked_input(x_in, l.in_features, "spmm(Bf16BlockSparse)", true).to(at::kBFloat16);
  const int64_t tokens = x.size(0);
  at::Tensor y = at::empty({tokens, l.out_features}, at::kFloat);
  if (tokens == 0 || l.out_features == 0) return y.zero_();
  float* yp = y.data_ptr<float>();
  if (vector_bf16(w, o)) {
    const at::Tensor xp = pack(x, l.in_padded / 2);  // a word: one token's channel pair
    const detail::BlockView v = view_of(l, w.values);
    const uint32_t* xpp = reinterpret_cast<const uint32_t*>(xp.data_ptr<int32_t>());
    parallel_units(detail::block16_f32_units(v, tokens), [&](int64_t b, int64_t e) {
      detail::block16_bf16_avx512bf16(v, xpp, tokens, yp, b, e);
    });
    return y;
  }
  // Portable: products of bf16 values are exact in fp32; fp32 sums, pair by pair.
  const int64_t bo = l.shape.out, in = l.in_features, out = l.out_features;
  const int64_t* ptr = l.block_ptr.data_ptr<int64_t>();
  const int32_t* col = l.block_col.data_ptr<int32_t>();
  const at::BFloat16* values = w.values.data_ptr<at::BFloat16>();
  const at::BFloat16* xb = x.data_ptr<at::BFloat16>();
  std::fill(yp, yp + tokens * out, 0.0f);
  parallel_units(l.block_rows(), [&](int64_t begin, int64_t end) {
    for (int64_t rb = begin; rb < end; ++rb)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t b = ptr[rb]; b < ptr[rb + 1]; ++b) {
          const int64_t k = int64_t(col[b]) * 2;
          const float x0 = float(xb[t * in + k]), x1 = k + 1 < in ? float(xb[t * in + k + 1]) : 0;
          for (int64_t j = 0; j < bo && rb * bo + j < out; ++j) {
            const at::BFloat16* v = values + (b * bo + j) * 2;
            yp[t * out + rb * bo + j] += float(v[0]) * x0 + float(v[1]) * x1;
          }
        }
  });
  return y;
}

at::Tensor spmm(const NMSparse& w, const at::Tensor& x_in, const SpmmOptions& o) {
  const at::Tensor x = checked_input(x_in, w.in_features, "spmm(NMSparse)");
  const detail::RowsView v{nullptr,
                           nullptr,
                           w.index.data_ptr<uint8_t>(),
                           w.values.data_ptr<float>(),
                           w.n,
                           w.m,
                           w.groups,
                           w.out_features,
                           w.groups * w.m};
  return rows_spmm(v, x, o);
}

at::Tensor sddmm(const NMSparse& w, const at::Tensor& dy_in, const at::Tensor& x_in,
                 const SpmmOptions& o) {
  const at::Tensor x = checked_input(x_in, w.in_features, "sddmm(NMSparse)");
  STRATA_CHECK(dy_in.defined() && dy_in.dim() == 2 && dy_in.scalar_type() == at::kFloat &&
                   dy_in.size(0) == x.size(0) && dy_in.size(1) == w.out_features,
               "sddmm(NMSparse): expected a float dy [", x.size(0), ", ", w.out_features, "], got ",
               dy_in.defined() ? dy_in.sizes() : at::IntArrayRef{});
  const int64_t tokens = x.size(0), in = w.in_features;
  // Both transposed once, so that each sampled dot product reads two contiguous rows.
  const at::Tensor dyT = dy_in.t().contiguous(), xT = x.t().contiguous();
  at::Tensor dv = at::empty({w.out_features, w.groups, w.n}, at::kFloat);
  const detail::RowsView v{
      nullptr,        nullptr,       w.index.data_ptr<uint8_t>(), nullptr, w.n, w.m, w.groups,
      w.out_features, w.groups * w.m};
  const float* a = dyT.data_ptr<float>();
  const float* b = xT.data_ptr<float>();
  float* d = dv.data_ptr<float>();
  const bool vec = vector_rows(o);
  parallel_units(detail::ceil_div(w.out_features, detail::kRowChunk), [&](int64_t u0, int64_t u1) {
    if (vec) return detail::nm_sddmm_avx512(v, in, a, b, tokens, d, u0, u1);
    const int64_t per_row = w.groups * w.n;
    for (int64_t o = u0 * detail::kRowChunk; o < std::min(w.out_features, u1 * detail::kRowChunk);
         ++o)
      for (int64_t j = o * per_row; j < (o + 1) * per_row; ++j) {
        const int64_t k = (j - o * per_row) / w.n * w.m + v.index[j];
        float sum = 0.0f;
        for (int64_t t = 0; k < in && t < tokens; ++t) sum += a[o * tokens + t] * b[k * tokens + t];
        d[j] = sum;
      }
  });
  return dv;
}

at::Tensor spmm(const CsrSparse& w, const at::Tensor& x_in, const SpmmOptions& o) {
  const at::Tensor x = checked_input(x_in, w.in_features, "spmm(CsrSparse)");
  const detail::RowsView v{w.row_ptr.data_ptr<int64_t>(),
                           w.col.data_ptr<int32_t>(),
                           nullptr,
                           w.values.data_ptr<float>(),
                           0,
                           1,
                           0,
                           w.out_features,
                           w.in_features};
  return rows_spmm(v, x, o);
}

QuantizedActivations quantize_activations(const at::Tensor& x_in, const SpmmOptions& o) {
  STRATA_CHECK(x_in.defined() && x_in.dim() == 2,
               "quantize_activations: expected input [tokens, in], got ",
               x_in.defined() ? x_in.sizes() : at::IntArrayRef{});
  const at::Tensor x = checked_input(x_in, x_in.size(1), "quantize_activations");
  const int64_t tokens = x.size(0), in = x.size(1);
  QuantizedActivations q;
  q.data = at::empty({tokens, in}, at::kByte);
  q.scale = at::empty({tokens}, at::kFloat);
  q.zero = at::empty({tokens}, at::kInt);
  std::vector<float> lo(tokens), hi(tokens);
  const float* xp = x.data_ptr<float>();
  float* scale = q.scale.data_ptr<float>();
  int32_t* zero = q.zero.data_ptr<int32_t>();
  uint8_t* qp = q.data.data_ptr<uint8_t>();
  const bool vec = vector_rows(o);
  const bool per_token = o.act_quant() == ActivationQuant::PerToken;
  const auto range = [&](int64_t t) {
    if (vec) return detail::row_minmax_avx512(xp + t * in, 1, in, in, &lo[t], &hi[t]);
    lo[t] = hi[t] = 0.0f;
    for (int64_t k = 0; k < in; ++k) {
      lo[t] = std::fmin(lo[t], xp[t * in + k]);
      hi[t] = std::fmax(hi[t], xp[t * in + k]);
    }
  };
  const auto quantize = [&](int64_t t) {
    const float inv = 1.0f / scale[t];
    if (vec)
      return detail::quantize_rows_avx512(xp + t * in, 1, in, in, &inv, zero + t, qp + t * in);
    for (int64_t k = 0; k < in; ++k)
      qp[t * in + k] = detail::quantize_one(xp[t * in + k], inv, zero[t]);
  };
  // Per token, a row is quantized right after its range, while it is still in L1.
  parallel_units(tokens, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      range(t);
      if (!per_token) continue;
      detail::affine_params(lo[t], hi[t], scale + t, zero + t);
      quantize(t);
    }
  });
  if (per_token || tokens == 0) return q;
  const float l = *std::min_element(lo.begin(), lo.end());
  const float h = *std::max_element(hi.begin(), hi.end());
  for (int64_t t = 0; t < tokens; ++t) detail::affine_params(l, h, scale + t, zero + t);
  parallel_units(tokens, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) quantize(t);
  });
  return q;
}

namespace {

void check_quantized(const Int8BlockSparse& w, const QuantizedActivations& x) {
  check_int8_in(w);
  STRATA_CHECK(x.data.defined() && x.data.dim() == 2 && x.data.scalar_type() == at::kByte,
               "spmm(Int8BlockSparse): expected uint8 activations [tokens, in]");
  STRATA_CHECK(x.data.size(1) == w.layout.in_features, "spmm(Int8BlockSparse): input has ",
               x.data.size(1), " features, the weight expects ", w.layout.in_features);
  STRATA_CHECK(x.scale.numel() == x.data.size(0) && x.zero.numel() == x.data.size(0),
               "spmm(Int8BlockSparse): expected one scale and zero point per token");
}

// acc (int32) or, with dq, dequantized y (float) [tokens, out] on the VNNI kernel.
void vnni_product(const Int8BlockSparse& w, const QuantizedActivations& x,
                  const detail::Int8Dequant* dq, void* y) {
  const int64_t tokens = x.data.size(0);
  const at::Tensor xq = pack(x.data.contiguous(), w.layout.in_padded / 4);
  const detail::BlockView v = view_of(w.layout, w.values);
  const uint32_t* xqp = reinterpret_cast<const uint32_t*>(xq.data_ptr<int32_t>());
  parallel_units(detail::row_units(w.layout.out_features, tokens), [&](int64_t b, int64_t e) {
    detail::block4_int8_avx512(v, xqp, tokens, y, dq, b, e);
  });
}

}  // namespace

at::Tensor spmm_int8_accumulate(const Int8BlockSparse& w, const QuantizedActivations& x,
                                const SpmmOptions& o) {
  check_quantized(w, x);
  const int64_t tokens = x.data.size(0);
  at::Tensor acc = at::empty({tokens, w.layout.out_features}, at::kInt);
  if (tokens == 0 || w.layout.out_features == 0) return acc.zero_();
  if (vector_int8(w, o)) {
    vnni_product(w, x, nullptr, acc.data_ptr<int32_t>());
  } else {
    const at::Tensor data = x.data.contiguous();
    portable_block<int32_t>(w.layout, w.values.data_ptr<int8_t>(), data.data_ptr<uint8_t>(), tokens,
                            acc.data_ptr<int32_t>());
  }
  return acc;
}

at::Tensor dequantize_accumulators(const Int8BlockSparse& w, const QuantizedActivations& x,
                                   const at::Tensor& acc_in) {
  const int64_t tokens = x.data.size(0), out = w.layout.out_features;
  STRATA_CHECK(acc_in.dim() == 2 && acc_in.size(0) == tokens && acc_in.size(1) == out &&
                   acc_in.scalar_type() == at::kInt,
               "dequantize_accumulators: expected int32 [", tokens, ", ", out, "], got ",
               acc_in.sizes());
  const at::Tensor acc = acc_in.contiguous();
  at::Tensor y = at::empty({tokens, out}, at::kFloat);
  const int32_t* a = acc.data_ptr<int32_t>();
  const float* xs = x.scale.data_ptr<float>();
  const int32_t* xz = x.zero.data_ptr<int32_t>();
  const float* ws = w.scale.data_ptr<float>();
  const int32_t* rs = w.row_sum.data_ptr<int32_t>();
  float* yp = y.data_ptr<float>();
  parallel_units(tokens, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (int64_t c = 0; c < out; ++c)
        yp[t * out + c] = detail::dequant_one(a[t * out + c], xz[t], rs[c], xs[t], ws[c]);
  });
  return y;
}

at::Tensor spmm(const Int8BlockSparse& w, const at::Tensor& x_in, const SpmmOptions& o) {
  const at::Tensor x = checked_input(x_in, w.layout.in_features, "spmm(Int8BlockSparse)");
  check_int8_in(w);
  const QuantizedActivations q = quantize_activations(x, o);
  const int64_t tokens = x.size(0);
  if (!vector_int8(w, o) || tokens == 0 || w.layout.out_features == 0)
    return dequantize_accumulators(w, q, spmm_int8_accumulate(w, q, o));
  at::Tensor y = at::empty({tokens, w.layout.out_features}, at::kFloat);
  const detail::Int8Dequant dq{q.scale.data_ptr<float>(), q.zero.data_ptr<int32_t>(),
                               w.scale.data_ptr<float>(), w.row_sum.data_ptr<int32_t>()};
  vnni_product(w, q, &dq, y.data_ptr<float>());
  return y;
}

std::string spmm_kernel(const BlockSparse& w, const SpmmOptions& o) {
  return vector_block16(w, o) ? "avx512-block-fp32" : "portable";
}
std::string spmm_kernel(const Bf16BlockSparse& w, const SpmmOptions& o) {
  return vector_bf16(w, o) ? "avx512bf16-block-bf16" : "portable";
}
std::string spmm_kernel(const Int8BlockSparse& w, const SpmmOptions& o) {
  return vector_int8(w, o) ? "avx512vnni-block-int8" : "portable";
}
std::string spmm_kernel(const NMSparse&, const SpmmOptions& o) {
  return vector_rows(o) ? "avx512-nm-fp32" : "portable";
}
std::string spmm_kernel(const CsrSparse&, const SpmmOptions& o) {
  return vector_rows(o) ? "avx512-csr-fp32" : "portable";
}

}  // namespace strata::sparse
