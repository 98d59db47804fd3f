#pragma once
// An op as the cost models see it: a kind and the few sizes that kind needs, nothing of
// LibTorch. aten_ops.h turns ATen ops into these; the dispatcher (cost_model.h) charges them.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/core/checked_math.h"

namespace strata::accel {

enum class OpKind { Gemm, Conv, Attention, Elementwise, Reduction, Copy, View, Unknown };
// "gemm", "conv", "attention", "elementwise", "reduction", "copy", "view", "unknown".
std::string to_string(OpKind kind);

// batch independent products of an m x k by a k x n matrix (m: rows of the input, the
// output pixels of a lowered conv; k: the reduction; n: the output channels).
struct GemmShape {
  int64_t m = 0;
  int64_t k = 0;
  int64_t n = 0;
  int64_t batch = 1;
  // Overflow: core::OverflowError (core/checked_math.h), never a wrapped-around count.
  int64_t macs() const { return (core::CheckedInt(batch) * m * k * n).get(); }
  // strata::Error naming the first size that is not positive.
  void check() const;
};

// A 2-D convolution of an NCHW input (height x width before padding).
struct ConvShape {
  int64_t batch = 1;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t kernel_h = 0;
  int64_t kernel_w = 0;
  int64_t stride_h = 1;
  int64_t stride_w = 1;
  int64_t pad_h = 0;
  int64_t pad_w = 0;
  int64_t dilation_h = 1;
  int64_t dilation_w = 1;
  int64_t groups = 1;

  int64_t out_height() const;
  int64_t out_width() const;
  int64_t macs() const;
  // im2col: per group, M = batch * H_out * W_out, K = C_in/groups * kh * kw,
  // N = C_out/groups; the GEMM's batch is the number of groups.
  GemmShape lowered() const;
  // strata::Error for non-positive sizes, channels not divisible by groups, or a kernel
  // larger than the padded input.
  void check() const;
};

// Softmax attention softmax(Q K^T) V for batch x heads, Q: seq_q x head_dim,
// K and V: seq_kv x head_dim.
enum class AttentionMapping { Unfused, Flat, Fused };
std::string to_string(AttentionMapping m);
AttentionMapping parse_attention_mapping(const std::string& text);  // unfused|flat|fused

struct AttentionShape {
  int64_t batch = 1;
  int64_t heads = 1;
  int64_t seq_q = 0;
  int64_t seq_kv = 0;
  int64_t head_dim = 0;
  AttentionMapping mapping = AttentionMapping::Fused;
  int64_t macs() const {
    return (2 * core::CheckedInt(batch) * heads * seq_q * seq_kv * head_dim).get();
  }
  void check() const;
};

struct OpDescription {
  OpKind kind = OpKind::Unknown;
  std::string name;              // what the report shows (e.g. "aten::addmm")
  std::vector<GemmShape> gemms;  // Gemm: charged one after another (a backward has two)
  ConvShape conv;                // Conv
  AttentionShape attention;      // Attention
  // Elementwise and Reduction: `elements` x `ops_per_element` element-ops; every kind
  // that moves data (these and Copy) reads bytes_in and writes bytes_out.
  int64_t elements = 0;
  double ops_per_element = 1;
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
  std::string note;  // why an op is Unknown, for the report

  static OpDescription gemm(std::string name, std::vector<GemmShape> gemms);
  static OpDescription convolution(std::string name, const ConvShape& conv);
  static OpDescription attention_op(std::string name, const AttentionShape& a);
  static OpDescription elementwise(std::string name, int64_t elements, double ops_per_element,
                                   int64_t bytes_in, int64_t bytes_out);
  static OpDescription reduction(std::string name, int64_t elements, double ops_per_element,
                                 int64_t bytes_in, int64_t bytes_out);
  static OpDescription copy(std::string name, int64_t bytes);
  static OpDescription view(std::string name);
  static OpDescription unknown(std::string name, std::string note);

  nlohmann::json to_json() const;
};

}  // namespace strata::accel
