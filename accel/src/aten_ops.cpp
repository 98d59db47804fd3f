#include "strata/accel/aten_ops.h"

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>

#include "strata/core/error.h"

namespace strata::accel {

namespace {

using Sizes = std::vector<int64_t>;
using SizesList = std::vector<Sizes>;

enum class Rule {
  Mm,
  Addmm,
  Bmm,
  Baddbmm,
  Matmul,
  Linear,
  Dot,
  Mv,
  Addmv,
  Conv,
  ConvBackward,
  Attention,
  Elementwise,
  Reduction,
  Copy,
  View
};

struct Entry {
  Rule rule;
  double ops_per_element = 1;  // element-ops per element (Elementwise, Reduction)
};

// The table. Ops per element: 1 for plain arithmetic and comparisons; 4 for a
// transcendental function (exp, log, tanh, erf, ...) as a short polynomial; softmax 5
// (max, subtract, exp, sum, divide); normalizations 6 (mean, variance's two, subtract,
// scale, shift).
const std::map<std::string, Entry>& table() {
  static const std::map<std::string, Entry> t = [] {
    std::map<std::string, Entry> m;
    auto add = [&](Rule r, double ops, std::initializer_list<const char*> names) {
      for (const char* n : names) m[n] = {r, ops};
    };
    add(Rule::Mm, 1, {"mm"});
    add(Rule::Addmm, 1, {"addmm"});
    add(Rule::Bmm, 1, {"bmm"});
    add(Rule::Baddbmm, 1, {"baddbmm"});
    add(Rule::Matmul, 1, {"matmul"});
    add(Rule::Linear, 1, {"linear"});
    add(Rule::Dot, 1, {"dot", "vdot"});
    add(Rule::Mv, 1, {"mv"});
    add(Rule::Addmv, 1, {"addmv"});
    add(Rule::Conv, 1,
        {"convolution", "_convolution", "convolution_overrideable", "conv2d", "conv1d"});
    add(Rule::ConvBackward, 1, {"convolution_backward", "convolution_backward_overrideable"});
    add(Rule::Attention, 1, {"scaled_dot_product_attention", "_scaled_dot_product_attention_math"});
    add(Rule::Elementwise, 1,
        {"add",
         "sub",
         "rsub",
         "mul",
         "div",
         "neg",
         "abs",
         "relu",
         "threshold",
         "threshold_backward",
         "clamp",
         "clamp_min",
         "clamp_max",
         "hardtanh",
         "hardtanh_backward",
         "leaky_relu",
         "leaky_relu_backward",
         "maximum",
         "minimum",
         "where",
         "masked_fill",
         "eq",
         "ne",
         "lt",
         "le",
         "gt",
         "ge",
         "sign",
         "reciprocal",
         "square",
         "fill",
         "zero",
         "zeros",
         "ones",
         "full",
         "zeros_like",
         "ones_like",
         "full_like",
         "arange",
         "linspace",
         "lerp",
         "addcmul",
         "addcdiv",
         "floor",
         "ceil",
         "round",
         "native_dropout_backward",
         "max_pool2d_with_indices_backward",
         "avg_pool2d_backward",
         "nll_loss_backward",
         "mse_loss_backward",
         "_log_softmax_backward_data",
         "embedding_dense_backward",
         "tril",
         "triu",
         "bitwise_and",
         "bitwise_or",
         "logical_not"});
    add(Rule::Elementwise, 2, {"dropout", "native_dropout", "bernoulli"});
    add(Rule::Elementwise, 4, {"exp",      "log",           "log1p",    "expm1",
                               "tanh",     "tanh_backward", "sigmoid",  "sigmoid_backward",
                               "gelu",     "gelu_backward", "silu",     "silu_backward",
                               "elu",      "elu_backward",  "erf",      "sqrt",
                               "rsqrt",    "pow",           "sin",      "cos",
                               "softplus", "normal",        "uniform",  "randn",
                               "rand",     "randn_like",    "rand_like"});
    add(Rule::Reduction, 1,
        {"sum",
         "mean",
         "amax",
         "amin",
         "max",
         "min",
         "argmax",
         "argmin",
         "prod",
         "any",
         "all",
         "max_pool2d",
         "max_pool2d_with_indices",
         "avg_pool2d",
         "adaptive_avg_pool2d",
         "_adaptive_avg_pool2d",
         "adaptive_max_pool2d",
         "nll_loss_forward",
         "nll_loss",
         "cumsum"});
    add(Rule::Reduction, 2, {"norm", "linalg_vector_norm", "_adaptive_avg_pool2d_backward"});
    add(Rule::Reduction, 3, {"var", "std", "var_mean", "std_mean", "mse_loss"});
    add(Rule::Reduction, 5,
        {"softmax", "_softmax", "log_softmax", "_log_softmax", "_softmax_backward_data",
         "logsumexp", "cross_entropy_loss"});
    add(Rule::Reduction, 6,
        {"layer_norm", "native_layer_norm", "native_layer_norm_backward", "batch_norm",
         "native_batch_norm", "_native_batch_norm_legit", "native_batch_norm_backward",
         "_batch_norm_impl_index", "group_norm", "native_group_norm"});
    add(Rule::Copy, 0,
        {"copy",
         "clone",
         "_to_copy",
         "to",
         "contiguous",
         "cat",
         "_cat",
         "stack",
         "index_select",
         "gather",
         "scatter",
         "index",
         "embedding",
         "repeat",
         "flip",
         "roll",
         "_copy_from",
         "_copy_from_and_resize",
         "constant_pad_nd",
         "masked_select"});
    add(Rule::View, 0, {"view",       "_unsafe_view",
                        "reshape",    "_reshape_alias",
                        "as_strided", "t",
                        "transpose",  "permute",
                        "expand",     "expand_as",
                        "unsqueeze",  "squeeze",
                        "slice",      "select",
                        "narrow",     "alias",
                        "detach",     "unfold",
                        "split",      "split_with_sizes",
                        "chunk",      "unbind",
                        "flatten",    "view_as",
                        "numpy_T",    "empty",
                        "empty_like", "empty_strided",
                        "new_empty",  "new_empty_strided",
                        "resize",     "set",
                        "lift_fresh", "_local_scalar_dense",
                        "item",       "result_type",
                        "size",       "stride",
                        "is_nonzero"});
    return m;
  }();
  return t;
}

int64_t numel(const Sizes& s) {
  return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<int64_t>());
}

int64_t prod(const Sizes& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end && i < s.size(); ++i) p *= s[i];
  return p;
}

[[noreturn]] void bad_shapes(const std::string& what) { STRATA_FAIL(what); }

void need_inputs(const SizesList& in, size_t count, const std::string& what) {
  if (in.size() < count)
    bad_shapes(what + ": got " + std::to_string(in.size()) + " tensor inputs, expected " +
               std::to_string(count));
}

void need_dims(const Sizes& s, size_t dims, const std::string& what) {
  if (s.size() != dims)
    bad_shapes(what + ": got " + std::to_string(s.size()) + " dimensions, expected " +
               std::to_string(dims));
}

// A conv argument list of one or two values, as two values.
std::pair<int64_t, int64_t> pair_of(const std::vector<int64_t>& v, int64_t fallback,
                                    const char* what) {
  if (v.empty()) return {fallback, fallback};
  if (v.size() == 1) return {v[0], v[0]};
  if (v.size() == 2) return {v[0], v[1]};
  STRATA_FAIL("conv ", what, ": got ", v.size(),
              " values, expected 1 or 2 (2-D convolutions only)");
}

ConvShape conv_shape(const Sizes& input, const Sizes& weight, const AtenConvArgs& args) {
  ConvShape s;
  if (input.size() == 3 && weight.size() == 3) {  // conv1d: N C L as N C 1 L
    s.batch = input[0], s.in_channels = input[1], s.height = 1, s.width = input[2];
    s.out_channels = weight[0], s.kernel_h = 1, s.kernel_w = weight[2];
    const auto pick = [](const std::vector<int64_t>& v, int64_t d) {
      return v.empty() ? d : v.back();
    };
    s.stride_w = pick(args.stride, 1), s.pad_w = pick(args.padding, 0),
    s.dilation_w = pick(args.dilation, 1);
  } else {
    need_dims(input, 4, "conv input");
    need_dims(weight, 4, "conv weight");
    s.batch = input[0], s.in_channels = input[1], s.height = input[2], s.width = input[3];
    s.out_channels = weight[0], s.kernel_h = weight[2], s.kernel_w = weight[3];
    std::tie(s.stride_h, s.stride_w) = pair_of(args.stride, 1, "stride");
    std::tie(s.pad_h, s.pad_w) = pair_of(args.padding, 0, "padding");
    std::tie(s.dilation_h, s.dilation_w) = pair_of(args.dilation, 1, "dilation");
  }
  s.groups = args.groups;
  return s;
}

OpDescription describe(const std::string& name, const std::string& base, const Entry& e,
                       const SizesList& in, const SizesList& out, int64_t dtype,
                       const AtenConvArgs& args) {
  int64_t bytes_in = 0, bytes_out = 0, out_elements = 0;
  for (const auto& s : in) bytes_in += numel(s) * dtype;
  for (const auto& s : out) {
    bytes_out += numel(s) * dtype;
    out_elements = std::max(out_elements, numel(s));
  }
  switch (e.rule) {
    case Rule::Mm:
    case Rule::Addmm: {
      const size_t a = e.rule == Rule::Addmm ? 1 : 0;
      need_inputs(in, a + 2, base);
      need_dims(in[a], 2, base + " first matrix");
      need_dims(in[a + 1], 2, base + " second matrix");
      return OpDescription::gemm(name, {{in[a][0], in[a][1], in[a + 1][1], 1}});
    }
    case Rule::Bmm:
    case Rule::Baddbmm: {
      const size_t a = e.rule == Rule::Baddbmm ? 1 : 0;
      need_inputs(in, a + 2, base);
      need_dims(in[a], 3, base + " first batch");
      need_dims(in[a + 1], 3, base + " second batch");
      return OpDescription::gemm(name, {{in[a][1], in[a][2], in[a + 1][2], in[a][0]}});
    }
    case Rule::Dot:
      need_inputs(in, 2, base);
      return OpDescription::gemm(name, {{1, numel(in[0]), 1, 1}});
    case Rule::Mv:
    case Rule::Addmv: {
      const size_t a = e.rule == Rule::Addmv ? 1 : 0;
      need_inputs(in, a + 2, base);
      need_dims(in[a], 2, base + " matrix");
      return OpDescription::gemm(name, {{in[a][0], in[a][1], 1, 1}});
    }
    case Rule::Linear: {  // input [..., K], weight [N, K]
      need_inputs(in, 2, base);
      need_dims(in[1], 2, base + " weight");
      const Sizes& x = in[0];
      if (x.empty()) bad_shapes(base + " input: a scalar");
      return OpDescription::gemm(name, {{prod(x, 0, x.size() - 1), x.back(), in[1][0], 1}});
    }
    case Rule::Matmul: {
      need_inputs(in, 2, base);
      const Sizes &a = in[0], &b = in[1];
      if (a.empty() || b.empty()) bad_shapes(base + ": a scalar operand");
      if (a.size() == 1 && b.size() == 1) return OpDescription::gemm(name, {{1, a[0], 1, 1}});
      if (b.size() == 1)
        return OpDescription::gemm(name, {{prod(a, 0, a.size() - 1), a.back(), 1, 1}});
      const int64_t k = b[b.size() - 2], n = b.back();
      if (a.size() == 1) return OpDescription::gemm(name, {{1, k, n, prod(b, 0, b.size() - 2)}});
      if (b.size() == 2)  // a batch of rows times one matrix: one GEMM with the rows stacked
        return OpDescription::gemm(name, {{prod(a, 0, a.size() - 1), k, n, 1}});
      const int64_t m = a[a.size() - 2];
      const int64_t batch = out.empty()
                                ? std::max(prod(a, 0, a.size() - 2), prod(b, 0, b.size() - 2))
                                : numel(out[0]) / (m * n);
      return OpDescription::gemm(name, {{m, k, n, batch}});
    }
    case Rule::Conv: {
      need_inputs(in, 2, base);
      const ConvShape s = conv_shape(in[0], in[1], args);
      if (!args.transposed) return OpDescription::convolution(name, s);
      // Transposed: weight is C_in x C_out/groups x kh x kw; every input pixel scatters a
      // kh x kw patch of each output channel: M = N*H*W, K = C_in/g, N = C_out/g*kh*kw.
      const int64_t g = args.groups;
      return OpDescription::gemm(name, {{s.batch * s.height * s.width, in[1][0] / g,
                                         in[1][1] * s.kernel_h * s.kernel_w, g}});
    }
    case Rule::ConvBackward: {  // grad_output, input, weight
      need_inputs(in, 3, base);
      need_dims(in[0], in[1].size(), base + " grad_output");
      const ConvShape s = conv_shape(in[1], in[2], args);
      const GemmShape fwd = s.lowered();  // M = N*Ho*Wo, K = Cin/g*kh*kw, N = Cout/g
      std::vector<GemmShape> gemms;
      // grad of the im2col input: (M x N) times (N x K); of the weight: (N x M) times (M x K).
      if (args.grad_input) gemms.push_back({fwd.m, fwd.n, fwd.k, fwd.batch});
      if (args.grad_weight) gemms.push_back({fwd.n, fwd.m, fwd.k, fwd.batch});
      if (gemms.empty()) return OpDescription::view(name);
      return OpDescription::gemm(name, gemms);
    }
    case Rule::Attention: {
      need_inputs(in, 3, base);
      need_dims(in[0], 4, base + " query");
      need_dims(in[1], 4, base + " key");
      AttentionShape a;
      a.batch = in[0][0], a.heads = in[0][1], a.seq_q = in[0][2], a.head_dim = in[0][3];
      a.seq_kv = in[1][2];
      return OpDescription::attention_op(name, a);
    }
    case Rule::Elementwise: {
      int64_t elements = out_elements;
      for (const auto& s : in) elements = std::max(elements, numel(s));
      if (!out.empty()) elements = out_elements;
      return OpDescription::elementwise(name, elements, e.ops_per_element, bytes_in, bytes_out);
    }
    case Rule::Reduction:
      if (in.empty()) bad_shapes(base + ": no tensor input");
      return OpDescription::reduction(name, numel(in[0]), e.ops_per_element, bytes_in, bytes_out);
    case Rule::Copy: {
      // copy_(self, src) moves src; the others move what they produce.
      int64_t bytes = bytes_out;
      if (base == "copy" && in.size() >= 2) bytes = numel(in[1]) * dtype;
      if (bytes == 0) bytes = bytes_in;
      return OpDescription::copy(name, bytes);
    }
    case Rule::View: return OpDescription::view(name);
  }
  return OpDescription::unknown(name, "no rule");
}

}  // namespace

std::string aten_base_name(const std::string& name) {
  std::string base = name;
  if (base.rfind("aten::", 0) == 0) base = base.substr(6);
  const auto dot = base.find('.');
  if (dot != std::string::npos) base = base.substr(0, dot);
  return base;
}

OpDescription describe_aten_op(const std::string& name,
                               const std::vector<std::vector<int64_t>>& input_sizes,
                               const std::vector<std::vector<int64_t>>& output_sizes,
                               int64_t dtype_size, const AtenConvArgs& conv) {
  std::string base = aten_base_name(name);
  auto it = table().find(base);
  if (it == table().end() && base.size() > 1 && base.back() == '_') {
    base.pop_back();  // in place: add_ costs what add does
    it = table().find(base);
  }
  if (it == table().end())
    return OpDescription::unknown(name, "no entry for '" + base + "' in the ATen op table");
  try {
    return describe(name, base, it->second, input_sizes, output_sizes, dtype_size, conv);
  } catch (const Error& e) {
    return OpDescription::unknown(name, e.what());
  }
}

std::vector<std::string> known_aten_ops() {
  std::vector<std::string> names;
  for (const auto& [n, e] : table()) names.push_back(n);
  return names;
}

}  // namespace strata::accel
