#include "strata/moe/moe_layer.h"

#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/moe/expert_parallel.h"

namespace strata::moe {

namespace {

// Identity on `out` in forward; in backward, also gradient 1 into the scalar `aux`, so that
// backward of any loss of `out` includes d(aux)/d(parameters) (see the header).
struct AddAuxLossGradient : torch::autograd::Function<AddAuxLossGradient> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& out,
                            const at::Tensor& aux) {
    ctx->saved_data["aux_options"] = aux.options().dtype().toScalarType();
    // A new tensor rather than `out` itself: returning an input from a custom function
    // would make the output an alias of it, with a view's rules for in-place use.
    return out.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto dtype = ctx->saved_data["aux_options"].toScalarType();
    return {grads[0], at::ones({}, grads[0].options().dtype(dtype))};
  }
};

}  // namespace

SortedDispatch sort_by_expert(const Routing& routing, int64_t experts) {
  SortedDispatch d;
  // Copies are token-major (token t's slots are t * k .. t * k + k - 1).
  const at::Tensor kept = routing.kept.reshape({-1}).nonzero().squeeze(1);
  const at::Tensor expert_of_copy = routing.expert_index.reshape({-1});
  d.copy = kept.index_select(0, stable_argsort(expert_of_copy.index_select(0, kept)));
  d.token = d.copy.div(routing.expert_index.size(1), "floor");
  d.counts = at::bincount(expert_of_copy.index_select(0, d.copy), {}, experts);
  d.count.assign(d.counts.data_ptr<int64_t>(), d.counts.data_ptr<int64_t>() + experts);
  return d;
}

at::Tensor combine(const at::Tensor& y_sorted, const Routing& routing,
                   const SortedDispatch& dispatch, int64_t tokens) {
  const at::Tensor gate = routing.weight.reshape({-1}).index_select(0, dispatch.copy).unsqueeze(1);
  return at::zeros({tokens, y_sorted.size(1)}, y_sorted.options())
      .index_add(0, dispatch.token, y_sorted * gate);
}

void MoELayerOptions::validate() const {
  router().validate();
  STRATA_CHECK(hidden() >= 1, "MoE expert hidden width ", hidden(), ", expected at least 1");
  if (expert_group()) {
    STRATA_CHECK(experts() % expert_group()->size() == 0, "MoE experts ", experts(),
                 " are not divisible by the expert-parallel size ", expert_group()->size());
  }
}

RouterOptions MoELayerOptions::router() const {
  return RouterOptions(d_model(), experts())
      .top_k(top_k())
      .capacity_factor(capacity_factor())
      .drop_priority(drop_priority())
      .balance_loss_coef(balance_loss_coef())
      .z_loss_coef(z_loss_coef())
      .jitter(jitter());
}

MoELayerImpl::MoELayerImpl(const MoELayerOptions& options_) : options(options_) {
  options.validate();
  if (options.own_router()) router = register_module("router", Router(options.router()));
  const int64_t experts = options.experts(), d = options.d_model(), h = options.hidden();
  const int64_t ranks = expert_parallel_size();
  const int64_t local = experts / ranks;
  first_expert_ = options.expert_group() ? options.expert_group()->rank() * local : 0;

  // GPT-2's initialization (as core::make_transformer_lm). Every rank draws the whole
  // stacks and keeps its slice, so that for one seed the experts are the same whatever
  // the expert-parallel size.
  torch::NoGradGuard no_grad;
  if (router) router->gate->weight.normal_(0.0, 0.02);
  auto slice = [&](const at::Tensor& full) { return full.narrow(0, first_expert_, local).clone(); };
  w_in = register_parameter("w_in", slice(at::empty({experts, h, d}).normal_(0.0, 0.02)));
  b_in = register_parameter("b_in", at::zeros({local, h}));
  w_out = register_parameter("w_out", slice(at::empty({experts, d, h}).normal_(0.0, 0.02)));
  b_out = register_parameter("b_out", at::zeros({local, d}));
}

int64_t MoELayerImpl::expert_parallel_size() const {
  return options.expert_group() ? options.expert_group()->size() : 1;
}

torch::OrderedDict<std::string, at::Tensor> MoELayerImpl::expert_parameters() const {
  torch::OrderedDict<std::string, at::Tensor> params;
  params.insert("w_in", w_in);
  params.insert("b_in", b_in);
  params.insert("w_out", w_out);
  params.insert("b_out", b_out);
  return params;
}

at::Tensor run_experts(const at::Tensor& rows, const std::vector<int64_t>& counts,
                       const ExpertFunction& expert, int64_t d_out, int64_t first_expert,
                       const TokenObserver& observer) {
  std::vector<at::Tensor> outputs;
  int64_t offset = 0;
  for (size_t j = 0; j < counts.size(); ++j) {
    if (counts[j] == 0) continue;
    const at::Tensor expert_rows = rows.narrow(0, offset, counts[j]);
    offset += counts[j];
    if (observer) observer(first_expert + static_cast<int64_t>(j), expert_rows.detach());
    outputs.push_back(expert(static_cast<int64_t>(j), expert_rows));
  }
  if (outputs.empty()) {
    // No rows for any of these experts. Under expert parallelism the empty result must
    // still be part of the autograd graph, or this rank would skip the all-to-all of the
    // backward pass that the other ranks of its group run, and they would wait forever.
    if (torch::GradMode::is_enabled() && rows.requires_grad()) return expert(0, rows);
    return at::zeros({0, d_out}, rows.options());
  }
  return at::cat(outputs, 0);
}

at::Tensor run_experts(const at::Tensor& rows, const std::vector<int64_t>& counts,
                       const at::Tensor& w_in, const at::Tensor& b_in, const at::Tensor& w_out,
                       const at::Tensor& b_out, int64_t first_expert,
                       const TokenObserver& observer) {
  const auto dense = [&](int64_t j, const at::Tensor& x) {
    return at::linear(at::gelu(at::linear(x, w_in[j], b_in[j])), w_out[j], b_out[j]);
  };
  return run_experts(rows, counts, dense, w_out.size(1), first_expert, observer);
}

void MoELayerImpl::set_compressed_experts(CompressedExperts experts) {
  STRATA_CHECK(experts, "MoE layer: null compressed experts");
  STRATA_CHECK(expert_parallel_size() == 1,
               "MoE layer: compressed experts run in one process, "
               "not over an expert group of ",
               expert_parallel_size());
  const int64_t d = options.d_model(), h = options.hidden();
  STRATA_CHECK(experts->size() == options.experts() && experts->model_dim() == d &&
                   experts->hidden_dim() == h,
               "MoE layer: compressed experts ", experts->size(), " of d ", experts->model_dim(),
               ", hidden ", experts->hidden_dim(), ", expected ", options.experts(), " of d ", d,
               ", hidden ", h);
  compressed_ = std::move(experts);
  // The dense stacks stay registered (the parameter names do not change) but hold nothing.
  torch::NoGradGuard no_grad;
  for (at::Tensor* p : {&w_in, &b_in, &w_out, &b_out}) p->set_data(at::empty({0}, p->options()));
}

at::Tensor add_aux_loss_gradient(const at::Tensor& out, const at::Tensor& aux) {
  return AddAuxLossGradient::apply(out, aux);
}

at::Tensor MoELayerImpl::forward(const at::Tensor& x) {
  const int64_t d = options.d_model();
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == d, "MoE layer input: shape ", x.sizes(),
               ", expected [..., ", d, "]");
  STRATA_CHECK(router, "MoE layer without a router of its own: call forward_routed");
  const at::Tensor tokens = x.reshape({-1, d});
  return forward_routed(tokens, router(tokens)).view(x.sizes());
}

at::Tensor MoELayerImpl::forward_routed(const at::Tensor& tokens, const Routing& routing) {
  const int64_t n = tokens.size(0), k = routing.expert_index.size(1);
  const SortedDispatch dispatch = sort_by_expert(routing, options.experts());
  const at::Tensor x_sorted = tokens.index_select(0, dispatch.token);
  if (compressed_) {
    // The kernels have no backward: gradients through the layer would silently be wrong.
    STRATA_CHECK(!is_training() && !(torch::GradMode::is_enabled() && tokens.requires_grad()),
                 "MoE layer with compressed experts is inference only: call eval() and run "
                 "under torch::NoGradGuard");
  }
  const auto run_local = [this](const at::Tensor& rows, const std::vector<int64_t>& counts) {
    if (compressed_) {
      const auto compressed = [this](int64_t j, const at::Tensor& x) {
        return compressed_->forward(j, x);
      };
      return run_experts(rows, counts, compressed, options.d_model(), first_expert_, observer_);
    }
    return run_experts(rows, counts, w_in, b_in, w_out, b_out, first_expert_, observer_);
  };
  const at::Tensor y_sorted =
      expert_parallel_size() > 1
          ? run_experts_parallel(x_sorted, dispatch.count, options.expert_group(), run_local)
          : run_local(x_sorted, dispatch.count);
  at::Tensor out = combine(y_sorted, routing, dispatch, n);

  stats_.tokens_per_expert = dispatch.counts;
  stats_.dropped = n * k - dispatch.copy.numel();
  stats_.capacity = routing.capacity;
  stats_.balance_loss = routing.balance_loss.item<double>();
  stats_.z_loss = routing.z_loss.item<double>();

  const double balance_coef = options.balance_loss_coef(), z_coef = options.z_loss_coef();
  if (is_training() && torch::GradMode::is_enabled() && (balance_coef > 0 || z_coef > 0)) {
    out = add_aux_loss_gradient(out, balance_coef * routing.balance_loss + z_coef * routing.z_loss);
  }
  return out;
}

}  // namespace strata::moe
