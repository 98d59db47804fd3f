#pragma once
// ATen ops as OpDescriptions: a pure function of the op's name, its tensor inputs' and
// outputs' sizes and the element size, driven by one table of names (see aten_ops.cpp).
//
//   describe_aten_op("aten::addmm", {{10}, {256, 1568}, {1568, 10}}, {{256, 10}}, 4)
//     -> gemm {m 256, k 1568, n 10}
//
// Names may carry the "aten::" prefix and an overload (".Tensor", ".out"); an in-place
// variant ("add_") is described like its out-of-place op when the table has no entry of
// its own. Input sizes are the op's tensor arguments in schema order (optional tensors
// that are absent left out); what the kinds charge:
//   gemm         mm, addmm, bmm, baddbmm, matmul, linear, dot, mv, addmv; transposed
//                convolutions and convolution backward as the GEMMs they lower to
//   conv         convolution, _convolution, convolution_overrideable, conv1d/2d (input
//                NCHW or NCL, weight C_out x C_in/groups x kh x kw; needs AtenConvArgs)
//   attention    scaled_dot_product_attention (q, k, v as B x H x L x D)
//   elementwise  unary and binary math, activations and their backward, dropout, fills
//   reduction    sums, means, norms, softmax, layer and batch norm, pooling, losses
//   copy         copy_, clone, _to_copy, cat, stack, index_select, gather, embedding
//   view         views and allocations (view, reshape, as_strided, t, empty, ...): no
//                data moves
//   unknown      anything else (listed in the report as uncharged)
// Element-wise and reduction ops read every input tensor and write every output; their
// element count is the largest output (element-wise) or the first input (reduction).

#include <cstdint>
#include <string>
#include <vector>

#include "strata/accel/op_description.h"

namespace strata::accel {

// The non-tensor arguments of convolutions (lists of one value apply to both dimensions).
struct AtenConvArgs {
  std::vector<int64_t> stride = {1};
  std::vector<int64_t> padding = {0};
  std::vector<int64_t> dilation = {1};
  int64_t groups = 1;
  bool transposed = false;
  // convolution_backward's output_mask: grad_input, grad_weight (grad_bias is a reduction
  // the GEMM description leaves out).
  bool grad_input = true;
  bool grad_weight = true;
};

// "aten::add_.Tensor" -> "add_".
std::string aten_base_name(const std::string& name);

// dtype_size: bytes per element as the accelerator moves them (bytes_in, bytes_out of
// vector ops and copies): spec.word_bytes models the accelerator's own datatype, as the
// GEMM, conv and attention models do (they count elements as words); the tensor's element
// size models moving the host's bytes.
// Never throws for an op it cannot describe: that is an Unknown description with a note.
OpDescription describe_aten_op(const std::string& name,
                               const std::vector<std::vector<int64_t>>& input_sizes,
                               const std::vector<std::vector<int64_t>>& output_sizes,
                               int64_t dtype_size, const AtenConvArgs& conv = {});

// The names the table knows (base names), for documentation and tests.
std::vector<std::string> known_aten_ops();

}  // namespace strata::accel
