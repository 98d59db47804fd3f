#include "strata/sparse/formats.h"
#include "strata/core/cpu_capability.h"
#include "strata/sparse/spmm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "common.h"
#include "kernels.h"

namespace strata::sparse {
namespace {

// [out_p, in_p] viewed as [block rows, shape.out, block cols, shape.in].
at::Tensor as_blocks(const at::Tensor& t, BlockShape s) {
  return t.view({t.size(0) / s.out, s.out, t.size(1) / s.in, s.in});
}

// Block row of every stored block, from the row pointers.
at::Tensor block_rows_of(const BlockLayout& l) {
  const at::Tensor counts = l.block_ptr.slice(0, 1) - l.block_ptr.slice(0, 0, -1);
  return at::repeat_interleave(at::arange(l.block_rows(), counts.options()), counts);
}

// Dense [out, in] from values [blocks, in, out]-shaped per block (any dtype).
at::Tensor blocks_to_dense(const BlockLayout& l, const at::Tensor& values) {
  const BlockShape s = l.shape;
  at::Tensor dense = at::zeros({l.block_rows(), l.in_padded / s.in, s.in, s.out}, values.options());
  dense.index_put_({block_rows_of(l), l.block_col.to(at::kLong)}, values);
  return dense.permute({0, 3, 1, 2})
      .reshape({l.out_padded, l.in_padded})
      .slice(0, 0, l.out_features)
      .slice(1, 0, l.in_features)
      .contiguous();
}

}  // namespace

double BlockLayout::density() const {
  const double total = double(out_features) * double(in_features);
  return total == 0 ? 0.0 : double(blocks()) * double(shape.in * shape.out) / total;
}

BlockSparse BlockSparse::from_dense(const at::Tensor& weight, const at::Tensor& mask,
                                    BlockShape shape, bool pad) {
  const at::Tensor w = detail::checked_weight(weight, "BlockSparse");
  const at::Tensor mk = detail::checked_mask(mask, w, "BlockSparse");
  const auto [out_p, in_p] = detail::block_padding(w, shape, pad);
  BlockSparse r;
  BlockLayout& l = r.layout;
  l.out_features = w.size(0);
  l.in_features = w.size(1);
  l.shape = shape;
  l.out_padded = out_p;
  l.in_padded = in_p;
  const at::Tensor m = detail::pad2d(mk, out_p, in_p);
  const at::Tensor kept = as_blocks(m, shape).any(3).any(1);  // [block rows, block cols]
  l.block_ptr = at::cat({at::zeros({1}, at::kLong), kept.sum(1).cumsum(0)});
  const at::Tensor where = kept.nonzero();  // row-major: by block row, then column
  l.block_col = where.select(1, 1).to(at::kInt).contiguous();
  const at::Tensor masked =
      as_blocks(detail::pad2d(w, out_p, in_p) * m, shape).permute({0, 2, 3, 1});
  r.values = masked.index({where.select(1, 0), where.select(1, 1)}).contiguous();
  return r;
}

at::Tensor BlockSparse::to_dense() const { return blocks_to_dense(layout, values); }

Bf16BlockSparse Bf16BlockSparse::from(const BlockSparse& weight) {
  const BlockLayout& l = weight.layout;
  const at::Tensor stored = blocks_to_dense(l, at::ones_like(weight.values)).to(at::kBool);
  const BlockSparse pairs =
      BlockSparse::from_dense(weight.to_dense(), stored, BlockShape{2, l.shape.out});
  Bf16BlockSparse r;
  r.layout = pairs.layout;
  r.values = pairs.values.transpose(1, 2).to(at::kBFloat16).contiguous();
  return r;
}

at::Tensor Bf16BlockSparse::to_dense() const {
  return blocks_to_dense(layout, values.transpose(1, 2).to(at::kFloat));
}

Int8BlockSparse Int8BlockSparse::quantize(const BlockSparse& weight) {
  const BlockLayout& l = weight.layout;
  Int8BlockSparse r;
  r.layout = l;
  const at::Tensor dense = detail::pad2d(weight.to_dense(), l.out_padded, l.in_padded);
  at::Tensor scale = dense.abs().amax(1) / 127.0f;
  r.scale = at::where(scale > 0, scale, at::ones_like(scale)).contiguous();
  // Scale of each stored value's output channel: [blocks, 1, shape.out].
  const at::Tensor s =
      r.scale.view({l.block_rows(), l.shape.out}).index({block_rows_of(l)}).unsqueeze(1);
  r.values = at::round(weight.values / s).clamp(-127, 127).to(at::kChar).contiguous();
  r.row_sum = detail::pad2d(r.to_dense_int8().to(at::kInt), l.out_padded, l.in_padded)
                  .sum(1)
                  .to(at::kInt)
                  .contiguous();
  return r;
}

at::Tensor Int8BlockSparse::to_dense_int8() const { return blocks_to_dense(layout, values); }

at::Tensor Int8BlockSparse::to_dense() const {
  return to_dense_int8().to(at::kFloat) * scale.slice(0, 0, layout.out_features).unsqueeze(1);
}

NMSparse NMSparse::from_dense(const at::Tensor& weight, const at::Tensor& mask, int64_t n,
                              int64_t m, bool pad) {
  detail::check_nm(n, m);
  const at::Tensor w = detail::checked_weight(weight, "NMSparse");
  const at::Tensor mk = detail::checked_mask(mask, w, "NMSparse");
  const int64_t out = w.size(0);
  const int64_t in_p = detail::padded_size(
      w.size(1), m, pad,
      "N:M " + std::to_string(n) + ":" + std::to_string(m) + ": M does not divide in");
  NMSparse r;
  r.out_features = out;
  r.in_features = w.size(1);
  r.n = n;
  r.m = m;
  r.groups = in_p / m;
  const at::Tensor mg = detail::pad2d(mk, out, in_p).view({out, r.groups, m});
  const at::Tensor counts = mg.sum(2);
  const at::Tensor over = (counts > n).flatten().nonzero();
  if (over.numel() > 0) {
    const int64_t g = over[0][0].item<int64_t>();
    STRATA_FAIL("mask is not ", n, ":", m, ": row ", g / r.groups, ", group ", g % r.groups,
                " has ", counts.flatten()[g].item<int64_t>(), " non-zeros");
  }
  // n slots per group: the set positions first, then unset ones (stored as 0), ascending.
  const at::Tensor pos = at::arange(m, at::kLong);
  const at::Tensor score = mg.to(at::kLong) * (2 * m) - pos;
  const at::Tensor slots = std::get<0>(std::get<1>(score.topk(n, 2)).sort(2));
  r.index = slots.to(at::kByte).contiguous();
  const at::Tensor wg =
      (detail::pad2d(w, out, in_p) * detail::pad2d(mk, out, in_p)).view({out, r.groups, m});
  r.values = wg.gather(2, slots).contiguous();
  return r;
}

namespace {

// Packs the n largest |w| of each group of kM (or m, when kM is 0) consecutive columns of a
// strided float matrix: n passes of a branch-free arg-max (a taken position scores -2),
// ties to the earlier position, then the n positions in ascending order. Padding
// positions score -1, below any real |w|, so they are taken only when a group runs short.
template <int kM>
void prune_rows(const float* w, int64_t row_stride, int64_t col_stride, int64_t rows, int64_t cols,
                int64_t n, int64_t m_runtime, int64_t groups, float* values, uint8_t* index) {
  const int m = kM ? kM : int(m_runtime);
  // The AVX-512 path (m = 8, n <= 8) unless the CPU lacks it or STRATA_CPU_CAPABILITY=portable.
  const bool vector = kM == 8 && n <= 8 && core::cpu_capability().avx512;
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    float score[32];
    int taken[32];
    // Group g of row `row` (x: the row's first weight), scalar.
    const auto scalar_group = [&](const float* x, int64_t row, int64_t g) {
      const int64_t first = g * m;
      const int real = int(std::min<int64_t>(m, cols - first));
      for (int j = 0; j < m; ++j)
        score[j] = j < real ? std::abs(x[(first + j) * col_stride]) : -1.0f;
      for (int k = 0; k < n; ++k) {
        float best = score[0];
        int at = 0;
        for (int j = 1; j < m; ++j) {
          const bool better = score[j] > best;
          best = better ? score[j] : best;
          at = better ? j : at;
        }
        taken[k] = at;
        score[at] = -2.0f;
      }
      for (int k = 1; k < n; ++k)  // insertion sort: n is small
        for (int i = k; i > 0 && taken[i - 1] > taken[i]; --i) std::swap(taken[i - 1], taken[i]);
      float* v = values + (row * groups + g) * n;
      uint8_t* ix = index + (row * groups + g) * n;
      for (int k = 0; k < n; ++k) {
        ix[k] = uint8_t(taken[k]);
        v[k] = taken[k] < real ? x[(first + taken[k]) * col_stride] : 0.0f;
      }
    };
    for (int64_t row = r0; row < r1; ++row) {
      const float* x = w + row * row_stride;
      int64_t g = 0;
      if (vector && row_stride == 1 && row % 16 == 0 && row + 16 <= r1) {
        // A transposed view (columns contiguous): these 16 rows are 16 contiguous columns
        // of the matrix read, 8 plain loads per group.
        for (; (g + 1) * 8 <= cols; ++g)
          detail::prune16_nm8_columns_avx512(x + g * 8 * col_stride, col_stride, n, groups * n,
                                             values + (row * groups + g) * n,
                                             index + (row * groups + g) * n);
        for (int64_t r = row; r < row + 16; ++r)
          for (int64_t rest = g; rest < groups; ++rest) scalar_group(w + r, r, rest);
        row += 15;
        continue;
      }
      if (vector && col_stride == 1) {  // 16 full groups of a contiguous row at a time
        for (; g + 16 <= groups && (g + 16) * 8 <= cols; g += 16)
          detail::prune16_nm8_avx512(x + g * 8, n, values + (row * groups + g) * n,
                                     index + (row * groups + g) * n);
      }
      for (; g < groups; ++g) scalar_group(x, row, g);
    }
  });
}

}  // namespace

NMSparse NMSparse::prune(const at::Tensor& weight, int64_t n, int64_t m, bool pad) {
  detail::check_nm(n, m);
  STRATA_CHECK(weight.defined() && weight.dim() == 2 && at::isFloatingType(weight.scalar_type()),
               "NMSparse::prune: expected a 2-D floating weight [out, in]");
  // A float weight is read through its strides, so a transposed view costs no copy.
  const at::Tensor w =
      weight.scalar_type() == at::kFloat ? weight.detach() : weight.detach().to(at::kFloat);
  const int64_t out = w.size(0), in = w.size(1);
  const int64_t in_p = detail::padded_size(
      in, m, pad, "N:M " + std::to_string(n) + ":" + std::to_string(m) + ": M does not divide in");
  NMSparse r;
  r.out_features = out;
  r.in_features = in;
  r.n = n;
  r.m = m;
  r.groups = in_p / m;
  r.values = at::empty({out, r.groups, n}, at::kFloat);
  r.index = at::empty({out, r.groups, n}, at::kByte);
  const auto args =
      std::make_tuple(w.data_ptr<float>(), w.stride(0), w.stride(1), out, in, n, m, r.groups,
                      r.values.data_ptr<float>(), r.index.data_ptr<uint8_t>());
  switch (m) {
    case 4: std::apply(prune_rows<4>, args); break;
    case 8: std::apply(prune_rows<8>, args); break;
    case 16: std::apply(prune_rows<16>, args); break;
    default: std::apply(prune_rows<0>, args);
  }
  return r;
}

NMSparse NMSparse::regather(const at::Tensor& weight) const {
  STRATA_CHECK(weight.defined() && weight.dim() == 2 && weight.scalar_type() == at::kFloat &&
                   weight.size(0) == out_features && weight.size(1) == in_features,
               "NMSparse::regather: expected a float weight [", out_features, ", ", in_features,
               "], got ", weight.defined() ? weight.sizes() : at::IntArrayRef{});
  NMSparse r = *this;
  r.values = at::empty_like(values);
  const at::Tensor w = weight.detach();
  const float* src = w.data_ptr<float>();
  const int64_t s0 = w.stride(0), s1 = w.stride(1), per_row = groups * n;
  const uint8_t* ix = index.data_ptr<uint8_t>();
  float* v = r.values.data_ptr<float>();
  const auto one = [&](int64_t row, int64_t group) {
    for (int64_t s = 0; s < n; ++s) {
      const int64_t j = row * per_row + group * n + s, k = group * m + ix[j];
      v[j] = k < in_features ? src[row * s0 + k * s1] : 0.0f;
    }
  };
  // Row by row when the rows are contiguous; group by group for a transposed view, so
  // that the m source rows of a group are read along their length.
  if (s1 == 1 || out_features == 1) {
    at::parallel_for(0, out_features, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row)
        for (int64_t group = 0; group < groups; ++group) one(row, group);
    });
  } else {
    at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t group = g0; group < g1; ++group)
        for (int64_t row = 0; row < out_features; ++row) one(row, group);
    });
  }
  return r;
}

at::Tensor NMSparse::mask() const {
  at::Tensor dense = at::zeros({out_features, groups, m}, at::kBool);
  dense.scatter_(2, index.to(at::kLong), true);
  return dense.view({out_features, groups * m}).slice(1, 0, in_features).contiguous();
}

at::Tensor NMSparse::to_dense() const {
  at::Tensor dense = at::zeros({out_features, groups, m}, values.options());
  dense.scatter_(2, index.to(at::kLong), values);
  return dense.view({out_features, groups * m}).slice(1, 0, in_features).contiguous();
}

CsrSparse CsrSparse::from_dense(const at::Tensor& weight, const at::Tensor& mask) {
  const at::Tensor w = detail::checked_weight(weight, "CsrSparse");
  const at::Tensor mk = detail::checked_mask(mask, w, "CsrSparse");
  CsrSparse r;
  r.out_features = w.size(0);
  r.in_features = w.size(1);
  r.row_ptr = at::cat({at::zeros({1}, at::kLong), mk.sum(1).cumsum(0)});
  const at::Tensor where = mk.nonzero();
  r.col = where.select(1, 1).to(at::kInt).contiguous();
  r.values = w.masked_select(mk).contiguous();
  return r;
}

at::Tensor CsrSparse::to_dense() const {
  at::Tensor dense = at::zeros({out_features, in_features}, values.options());
  const at::Tensor counts = row_ptr.slice(0, 1) - row_ptr.slice(0, 0, -1);
  const at::Tensor rows = at::repeat_interleave(at::arange(out_features, at::kLong), counts);
  dense.index_put_({rows, col.to(at::kLong)}, values);
  return dense;
}

}  // namespace strata::sparse
