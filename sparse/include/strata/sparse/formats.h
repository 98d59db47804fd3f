#pragma once
// Packed sparse weights built from a dense weight [out, in] and a boolean mask [out, in].
//
//   BlockSparse      constant blocks of shape.in input channels x shape.out output
//                    channels (the "KxN" naming of GEMM shapes: "4x1" is 4 consecutive
//                    input channels of one output channel, "1x16" one input channel of 16
//                    consecutive output channels); fp32 values.
//   Int8BlockSparse  the same blocks quantized to int8, symmetric per output channel.
//   NMSparse         N:M along the input dimension: each group of M consecutive input
//                    channels of a row holds at most N non-zeros (0 < N < M <= 32).
//   CsrSparse        compressed sparse rows, the general fallback.
//   Bf16BlockSparse  a BlockSparse regrouped into 2 x out blocks of bf16 pairs, for the
//                    AVX512-BF16 kernel (vdpbf16ps multiplies pairs of input channels).
//
// A block (or group) is stored when any of its mask elements is set; its unset elements
// are stored as zeros, so to_dense() == weight * mask exactly. Padding rule: when the
// block (or M) does not divide the weight, the weight is padded with zero rows/columns at
// the end up to the next multiple (options.pad, the default); with pad = false that is an
// error. Padding never changes the product; to_dense() returns the unpadded shape.
//
// The members are the packed arrays the kernels read; treat them as read-only.

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace strata::sparse {

struct BlockShape {
  int64_t in = 1;    // consecutive input channels per block
  int64_t out = 16;  // consecutive output channels per block
  std::string str() const { return std::to_string(in) + "x" + std::to_string(out); }
};

// Which blocks of a [out, in] weight are stored, in block rows of shape.out output channels.
struct BlockLayout {
  int64_t out_features = 0, in_features = 0;
  BlockShape shape;
  int64_t out_padded = 0, in_padded = 0;  // multiples of shape.out / shape.in
  at::Tensor
      block_ptr;  // int64 [out_padded / shape.out + 1]: blocks of block row r are ptr[r]..ptr[r+1]
  at::Tensor block_col;  // int32 [blocks]: first input channel / shape.in, ascending in a row
  int64_t blocks() const { return block_col.numel(); }
  int64_t block_rows() const { return out_padded / shape.out; }
  // Stored weights (blocks x block size) over out_features x in_features.
  double density() const;
};

class BlockSparse {
 public:
  BlockSparse() = default;
  // pad: zero-pad a weight the block shape does not divide (see the header comment).
  static BlockSparse from_dense(const at::Tensor& weight, const at::Tensor& mask, BlockShape shape,
                                bool pad = true);
  at::Tensor to_dense() const;  // float [out, in]

  BlockLayout layout;
  at::Tensor values;  // float [blocks, shape.in, shape.out], output channel fastest
};

class Int8BlockSparse {
 public:
  Int8BlockSparse() = default;
  // Quantizes the stored values to int8 in [-127, 127] with one scale per output channel,
  // scale = max |w| / 127 over the row (1 for an all-zero row).
  static Int8BlockSparse quantize(const BlockSparse& weight);
  at::Tensor to_dense() const;       // float [out, in]: the dequantized weight q * scale
  at::Tensor to_dense_int8() const;  // int8 [out, in]: q

  BlockLayout layout;
  at::Tensor values;   // int8 [blocks, shape.in, shape.out] (4x1: one 32-bit VNNI word per block)
  at::Tensor scale;    // float [out_padded]
  at::Tensor row_sum;  // int32 [out_padded]: sum of q over each row (for the activation zero point)
};

class Bf16BlockSparse {
 public:
  Bf16BlockSparse() = default;
  // The same stored positions as `weight` (its blocks, zeros included), regrouped into
  // blocks of 2 consecutive input channels (aligned: channels 2p and 2p+1) x shape.out
  // output channels, values rounded to bf16. A block row's pair is stored when any of
  // its positions is; odd block widths (1x16) thus store a zero partner.
  static Bf16BlockSparse from(const BlockSparse& weight);
  at::Tensor to_dense() const;  // float [out, in]: the bf16-rounded weight

  BlockLayout layout;  // shape {2, weight's shape.out}; block_col: the pair index
  at::Tensor values;   // bf16 [blocks, shape.out, 2]: pair fastest, as vdpbf16ps reads it
};

class NMSparse {
 public:
  NMSparse() = default;
  // mask must have at most n set elements in every group (see nm_magnitude_mask).
  static NMSparse from_dense(const at::Tensor& weight, const at::Tensor& mask, int64_t n, int64_t m,
                             bool pad = true);
  // Keeps the n largest |w| of every group and packs them in one pass, without a mask:
  // what from_dense(weight, nm_magnitude_mask(weight, n, m), n, m) gives (ties go to the
  // lower position). N:M training repacks its weights with it at every step.
  static NMSparse prune(const at::Tensor& weight, int64_t n, int64_t m, bool pad = true);
  // The same positions with their values read from `weight` (float [out, in], any
  // strides, e.g. a transposed view): N:M training between two mask updates, where the
  // weights change but the mask does not. O(stored values), no selection.
  NMSparse regather(const at::Tensor& weight) const;
  at::Tensor to_dense() const;
  // bool [out, in]: the stored positions that hold a real weight (not padding).
  at::Tensor mask() const;

  int64_t out_features = 0, in_features = 0, n = 0, m = 0;
  int64_t groups = 0;  // ceil(in / m)
  at::Tensor values;   // float [out, groups, n]; unused slots hold 0
  at::Tensor index;    // uint8 [out, groups, n]: position inside the group, ascending
};

class CsrSparse {
 public:
  CsrSparse() = default;
  static CsrSparse from_dense(const at::Tensor& weight, const at::Tensor& mask);
  at::Tensor to_dense() const;
  int64_t nnz() const { return col.numel(); }

  int64_t out_features = 0, in_features = 0;
  at::Tensor row_ptr;  // int64 [out + 1]
  at::Tensor col;      // int32 [nnz], ascending in a row
  at::Tensor values;   // float [nnz]
};

}  // namespace strata::sparse
