#include "strata/sparse/nm_sparse_linear.h"
#include <torch/torch.h>
#include "strata/core/error.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "common.h"

namespace strata::sparse {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

NMSparse unpack(const AutogradContext* ctx, const std::string& prefix, int64_t in, int64_t out) {
  NMSparse w;
  w.values = ctx->saved_data.at(prefix + "values").toTensor();
  w.index = ctx->saved_data.at(prefix + "index").toTensor();
  w.out_features = out;
  w.in_features = in;
  w.n = w.values.size(2);
  w.m = ctx->saved_data.at("m").toInt();
  w.groups = w.values.size(1);
  return w;
}

// Calls f(row, col, slot) for every stored position of `kept` that is not padding.
template <typename F>
void for_kept(const NMSparse& kept, F&& f) {
  const int64_t groups = kept.groups, n = kept.n, m = kept.m, in = kept.in_features;
  const uint8_t* ix = kept.index.data_ptr<uint8_t>();
  at::parallel_for(0, kept.out_features, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row)
      for (int64_t group = 0; group < groups; ++group) {
        const int64_t slot = (row * groups + group) * n;
        for (int64_t k = 0; k < n; ++k) {
          const int64_t col = group * m + ix[slot + k];
          if (col < in) f(row, col, slot + k);
        }
      }
  });
}

// dw += decay * w where the N:M weight `kept` does not keep w: all of decay * w, then the
// kept positions' share taken back, O(nnz) instead of a mask the size of w.
void add_pruned_decay(at::Tensor& dw, const at::Tensor& w, const NMSparse& kept, double decay) {
  dw.add_(w, decay);
  const float d = float(decay);
  const int64_t in = kept.in_features;
  float* g = dw.data_ptr<float>();
  const float* v = kept.values.data_ptr<float>();
  for_kept(kept, [&](int64_t row, int64_t col, int64_t j) { g[row * in + col] -= d * v[j]; });
}

// The masked weight gradient: dv (sddmm at the kept positions) there, decay * w elsewhere.
at::Tensor masked_weight_grad(const at::Tensor& dv, const at::Tensor& w, const NMSparse& kept,
                              double decay) {
  at::Tensor dw = decay != 0.0 ? w.mul(decay) : at::zeros_like(w);
  const int64_t in = kept.in_features;
  float* g = dw.data_ptr<float>();
  const float* d = dv.data_ptr<float>();
  for_kept(kept, [&](int64_t row, int64_t col, int64_t j) { g[row * in + col] = d[j]; });
  return dw;
}

// y = x (W*P)^T + b with the spmm kernels, P (and BDWP's Q, the N:M weight of W^T, when a
// backward follows) packed by the module; backward as nm_sparse_linear.h describes.
struct NMSparseLinearFunction : public torch::autograd::Function<NMSparseLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, const NMSparse& sparse,
                            const NMSparse& backward_weight, int64_t method, double decay,
                            bool portable, bool dense_grad) {
    const SpmmOptions spmm_options = SpmmOptions().portable(portable);
    at::Tensor y = spmm(sparse, x, spmm_options);
    if (bias.defined()) y.add_(bias);
    ctx->save_for_backward({x, weight});
    ctx->saved_data["values"] = sparse.values;
    ctx->saved_data["index"] = sparse.index;
    if (backward_weight.values.defined()) {
      ctx->saved_data["t_values"] = backward_weight.values;
      ctx->saved_data["t_index"] = backward_weight.index;
    }
    ctx->saved_data["m"] = sparse.m;
    ctx->saved_data["method"] = method;
    ctx->saved_data["decay"] = decay;
    ctx->saved_data["portable"] = portable;
    ctx->saved_data["dense_grad"] = dense_grad;
    ctx->saved_data["has_bias"] = bias.defined();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor w = saved[1].detach();
    const at::Tensor dy = grad_outputs[0].contiguous();
    const int64_t out = w.size(0), in = w.size(1);
    const auto method = static_cast<NMTraining>(ctx->saved_data["method"].toInt());
    const double decay = ctx->saved_data["decay"].toDouble();
    const SpmmOptions spmm_options = SpmmOptions().portable(ctx->saved_data["portable"].toBool());
    const NMSparse forward_weight = unpack(ctx, "", in, out);

    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      // dx = dy Wb. BDWP: an N:M spmm with Wb^T [in, out], pruned along the output channels.
      // SR-STE: a dense product with the masked weight (its transpose is not N:M).
      if (method == NMTraining::Bdwp) {
        dx = spmm(unpack(ctx, "t_", out, in), dy, spmm_options);
      } else {
        dx = at::mm(dy, forward_weight.to_dense());
      }
    }
    at::Tensor dw;
    if (ctx->needs_input_grad(1)) {
      if (ctx->saved_data["dense_grad"].toBool()) {
        dw = at::mm(dy.t(), x);
        if (decay != 0.0) add_pruned_decay(dw, w, forward_weight, decay);
      } else {
        dw = masked_weight_grad(sddmm(forward_weight, dy, x, spmm_options), w, forward_weight,
                                decay);
      }
    }
    at::Tensor db;
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) db = dy.sum(0);
    return {dx,           dw,           db,           at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

NMTraining parse_nm_training(const std::string& name) {
  if (name == "srste") return NMTraining::SrSte;
  if (name == "bdwp") return NMTraining::Bdwp;
  STRATA_FAIL("N:M training method '", name, "': expected srste or bdwp");
}

std::string to_string(NMTraining method) { return method == NMTraining::SrSte ? "srste" : "bdwp"; }

NMSparseLinearImpl::NMSparseLinearImpl(const NMSparseLinearOptions& options_) : options(options_) {
  reset();
}

NMSparseLinearImpl::NMSparseLinearImpl(const torch::nn::Linear& linear,
                                       NMSparseLinearOptions options_)
    : options(options_.in_features(linear->options.in_features())
                  .out_features(linear->options.out_features())
                  .bias(linear->bias.defined())) {
  reset();
  torch::NoGradGuard no_grad;
  weight.copy_(linear->weight);
  if (bias.defined()) bias.copy_(linear->bias);
}

void NMSparseLinearImpl::reset() {
  STRATA_CHECK(options.in_features() > 0 && options.out_features() > 0, "NMSparseLinear: sizes ",
               options.in_features(), " -> ", options.out_features(), ": expected positive sizes");
  STRATA_CHECK(options.n() > 0 && options.n() < options.m() && options.m() <= 32, "N:M ",
               options.n(), ":", options.m(), ": expected 0 < N < M <= 32");
  STRATA_CHECK(options.decay() >= 0.0, "NMSparseLinear: decay ", options.decay(),
               ": expected >= 0");
  STRATA_CHECK(options.mask_every() >= 1, "NMSparseLinear: mask_every ", options.mask_every(),
               ": expected >= 1 (training steps between mask updates)");
  STRATA_CHECK(options.dense_grad_every() >= 0, "NMSparseLinear: dense_grad_every ",
               options.dense_grad_every(),
               ": expected >= 0 (training steps between dense weight gradients, 0: never)");
  weight =
      register_parameter("weight", torch::empty({options.out_features(), options.in_features()}));
  bias = options.bias() ? register_parameter("bias", torch::empty({options.out_features()}))
                        : register_parameter("bias", {}, /*requires_grad=*/false);
  // torch::nn::Linear's initialisation: kaiming_uniform(a = sqrt(5)), bias U(+-1/sqrt(in)).
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(double(options.in_features()));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

at::Tensor NMSparseLinearImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == options.in_features(), "NMSparseLinear: input ",
               x.sizes(), ": expected [*, ", options.in_features(), "]");
  const at::Tensor x2 = x.reshape({-1, options.in_features()}).to(at::kFloat);
  const bool grad = torch::GradMode::is_enabled() && weight.requires_grad();
  const bool training = is_training() && grad;
  const int64_t step = steps_;
  if (training) ++steps_;
  const int64_t every = options.mask_every(), dense_every = options.dense_grad_every();
  const at::Tensor w = weight.detach();
  NMSparse sparse, backward_weight;
  const bool bdwp_backward = torch::GradMode::is_enabled() &&
                             (weight.requires_grad() || x2.requires_grad()) &&
                             options.method() == NMTraining::Bdwp;
  if (every == 1 || !forward_pattern_.values.defined() || (training && step % every == 0)) {
    sparse = NMSparse::prune(w, options.n(), options.m());
    // The transposed view, no copy: prune reads 16 columns of W per vector load.
    if (bdwp_backward) backward_weight = NMSparse::prune(w.t(), options.n(), options.m());
    if (every > 1 && training) {
      forward_pattern_ = sparse;
      backward_pattern_ = backward_weight;
    }
  } else {
    sparse = forward_pattern_.regather(w);
    if (bdwp_backward) backward_weight = backward_pattern_.regather(w.t());
  }
  const bool dense_grad = dense_every == 1 || (dense_every > 1 && step % dense_every == 0);
  at::Tensor y = NMSparseLinearFunction::apply(
      x2, weight, bias, sparse, backward_weight, static_cast<int64_t>(options.method()),
      options.decay(), options.spmm().portable(), dense_grad);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = options.out_features();
  return y.view(shape);
}

NMSparse NMSparseLinearImpl::next_weight() const {
  const int64_t every = options.mask_every();
  if (every > 1 && forward_pattern_.values.defined() && steps_ % every != 0)
    return forward_pattern_.regather(weight.detach());
  return NMSparse::prune(weight, options.n(), options.m());
}

at::Tensor NMSparseLinearImpl::mask() const { return next_weight().mask(); }

at::Tensor NMSparseLinearImpl::sparse_weight() const { return next_weight().to_dense(); }

SparseLinear NMSparseLinearImpl::to_sparse_linear() const {
  torch::nn::Linear dense(
      torch::nn::LinearOptions(options.in_features(), options.out_features()).bias(bias.defined()));
  torch::NoGradGuard no_grad;
  dense->weight.copy_(weight);
  if (bias.defined()) dense->bias.copy_(bias);
  return SparseLinear(dense,
                      SparseLinearOptions()
                          .format(SparseFormat::NM)
                          .n(options.n())
                          .m(options.m())
                          .spmm(options.spmm()),
                      mask());
}

void NMSparseLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "strata::sparse::NMSparseLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", n=" << options.n()
         << ", m=" << options.m() << ", method=" << to_string(options.method()) << ")";
}

torch::nn::Sequential with_nm_sparse_training(const torch::nn::Sequential& model,
                                              const NMSparseLinearOptions& like,
                                              bool keep_last_dense, int* replaced) {
  std::string last;
  for (const auto& child : model->named_children())
    if (child.value()->as<torch::nn::Linear>()) last = child.key();
  int count = 0;
  auto result = detail::replace_linears(
      model,
      [&](const std::string& name,
          const torch::nn::Linear& linear) -> std::optional<torch::nn::AnyModule> {
        if (keep_last_dense && name == last) return std::nullopt;
        ++count;
        return torch::nn::AnyModule(NMSparseLinear(linear, like));
      });
  if (replaced) *replaced = count;
  return result;
}

}  // namespace strata::sparse
