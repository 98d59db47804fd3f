// Whole-model passes: quantize_model, the parameter groups, post-training calibration
// and the multiplier report.
#include <torch/torch.h>

#include <unordered_set>

#include "qfx_detail.h"
#include "strata/core/error.h"
#include "strata/quant/qfx.h"

namespace strata::quant {
namespace nn = torch::nn;

namespace {

template <typename Impl>
bool is(const std::shared_ptr<nn::Module>& m) {
  return std::dynamic_pointer_cast<Impl>(m) != nullptr;
}

// Layers that keep a fixed-point value on its grid and pass it on unchanged in type.
bool keeps_grid(const std::shared_ptr<nn::Module>& m) {
  return is<nn::ReLUImpl>(m) || is<nn::MaxPool2dImpl>(m) || is<nn::FlattenImpl>(m) ||
         is<nn::DropoutImpl>(m) || is<nn::IdentityImpl>(m);
}

void copy_into(const at::Tensor& to, const at::Tensor& from) {
  torch::NoGradGuard no_grad;
  to.copy_(from);
}

// Appends the QFX layer for `m` to `out` as `name`; false when `m` has none.
bool quantize_layer(const std::shared_ptr<nn::Module>& m, const QfxOptions& o, bool unsigned_input,
                    bool unsigned_output, nn::Sequential& out, const std::string& name) {
  if (auto linear = std::dynamic_pointer_cast<nn::LinearImpl>(m)) {
    const auto& lo = linear->options;
    QfxLinear q(QfxLinearOptions(lo.in_features(), lo.out_features(), o)
                    .bias(lo.bias())
                    .unsigned_input(unsigned_input)
                    .unsigned_output(unsigned_output));
    copy_into(q->weight, linear->weight);
    if (lo.bias()) copy_into(q->bias, linear->bias);
    out->push_back(std::string(name), q.ptr());
    return true;
  }
  if (auto conv = std::dynamic_pointer_cast<nn::Conv2dImpl>(m)) {
    const auto& co = conv->options;
    const auto conv_options =
        nn::Conv2dOptions(co.in_channels(), co.out_channels(), co.kernel_size())
            .stride(co.stride())
            .padding(co.padding())
            .dilation(co.dilation())
            .groups(co.groups())
            .bias(co.bias())
            .padding_mode(co.padding_mode());
    QfxConv2d q(QfxConv2dOptions(conv_options, o)
                    .unsigned_input(unsigned_input)
                    .unsigned_output(unsigned_output));
    copy_into(q->weight, conv->weight);
    if (conv->options.bias()) copy_into(q->bias, conv->bias);
    out->push_back(std::string(name), q.ptr());
    return true;
  }
  if (auto bn = std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(m)) {
    const auto& bo = bn->options;
    STRATA_CHECK(bo.track_running_stats(),
                 "quantize_model: BatchNorm2d without running statistics cannot be folded");
    QfxBatchNorm2d q(QfxBatchNorm2dOptions(bo.num_features(), o)
                         .eps(bo.eps())
                         .momentum(bo.momentum().value_or(0.1))
                         .unsigned_input(unsigned_input)
                         .unsigned_output(unsigned_output));
    if (bo.affine()) {
      copy_into(q->weight, bn->weight);
      copy_into(q->bias, bn->bias);
    }
    copy_into(q->running_mean, bn->running_mean);
    copy_into(q->running_var, bn->running_var);
    out->push_back(std::string(name), q.ptr());
    return true;
  }
  return false;
}

// `nonnegative`: whether the values reaching the next layer are known to be >= 0.
nn::Sequential quantize_sequential(const nn::SequentialImpl& model, const QfxOptions& o) {
  bool nonnegative = false;  // nothing is known about the model's input
  nn::Sequential out;
  for (size_t i = 0; i < model.size(); ++i) {
    const std::shared_ptr<nn::Module> m = model.ptr(i);
    // An unsigned output type clamps negatives to 0 only when it saturates; a wrapping
    // one would turn them into large positive values.
    const bool relu_next =
        i + 1 < model.size() && is<nn::ReLUImpl>(model.ptr(i + 1)) && !detail::wraps(o.overflow());
    if (quantize_layer(m, o, nonnegative, relu_next, out, std::to_string(i))) {
      nonnegative = relu_next;
      // The ReLU after an unsigned output is a no-op, but it stays for readability.
    } else if (keeps_grid(m)) {
      out->push_back(std::to_string(i), (model.begin() + static_cast<std::ptrdiff_t>(i))->clone());
      if (is<nn::ReLUImpl>(m)) nonnegative = true;
    } else {
      STRATA_FAIL("quantize_model: layer ", i, " (", detail::layer_name(*m),
                  ") is not supported; supported: Linear, Conv2d, BatchNorm2d, ReLU, MaxPool2d, "
                  "Flatten, Dropout, Identity");
    }
  }
  return out;
}

}  // namespace

nn::Sequential quantize_model(const nn::Sequential& model, const QfxOptions& options) {
  options.check();
  STRATA_CHECK(!model.is_empty(), "quantize_model: empty model holder");
  nn::Sequential out = quantize_sequential(*model, options);
  out->train(model->is_training());
  return out;
}

nn::Sequential quantize_model(const std::shared_ptr<nn::Module>& model, const QfxOptions& options) {
  STRATA_CHECK(model != nullptr, "quantize_model: null model");
  auto sequential = std::dynamic_pointer_cast<nn::SequentialImpl>(model);
  STRATA_CHECK(sequential != nullptr, "quantize_model: expected a torch::nn::Sequential, got ",
               detail::layer_name(*model));
  return quantize_model(nn::Sequential(sequential), options);
}

std::vector<FixedPointQuantizer> quantizers_of(const nn::Module& model) {
  std::vector<FixedPointQuantizer> out;
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto q = std::dynamic_pointer_cast<FixedPointQuantizerImpl>(m)) out.emplace_back(q);
  }
  return out;
}

std::vector<at::Tensor> binary_point_parameters(const nn::Module& model) {
  std::vector<at::Tensor> out;
  for (const auto& q : quantizers_of(model)) {
    if (q->integer_bits.requires_grad()) out.push_back(q->integer_bits);
  }
  return out;
}

std::vector<at::Tensor> weight_parameters(const nn::Module& model) {
  std::unordered_set<const void*> binary_points;
  for (const auto& q : quantizers_of(model))
    binary_points.insert(q->integer_bits.unsafeGetTensorImpl());
  std::vector<at::Tensor> out;
  for (const auto& p : model.parameters()) {
    if (!binary_points.count(p.unsafeGetTensorImpl())) out.push_back(p);
  }
  return out;
}

void calibrate_ptq(nn::Sequential model, const std::vector<at::Tensor>& batches,
                   const PtqOptions& options) {
  STRATA_CHECK(!batches.empty(), "calibrate_ptq: no calibration batches");
  const auto quantizers = quantizers_of(*model);
  STRATA_CHECK(!quantizers.empty(), "calibrate_ptq: the model has no QFX layers");
  // Checked once here so that a bad percentile leaves every quantizer as it was.
  STRATA_CHECK(options.percentile() > 0 && options.percentile() <= 100,
               "calibrate_ptq: percentile ", options.percentile(),
               " out of range, expected (0, 100]");
  const bool was_training = model->is_training();
  model->eval();
  for (auto q : quantizers) q->start_observing(options.statistic(), options.percentile());
  {
    torch::NoGradGuard no_grad;
    for (const auto& batch : batches) model->forward(batch);
  }
  for (auto q : quantizers) q->finish_observing();
  model->train(was_training);
}

MultiplierReport& MultiplierReport::operator+=(const MultiplierReport& o) {
  weights += o.weights;
  nonzero_weights += o.nonzero_weights;
  multipliers += o.multipliers;
  shift_adds += o.shift_adds;
  max_set_bits = std::max(max_set_bits, o.max_set_bits);
  return *this;
}

namespace {

MultiplierReport report_weights(const FixedPointQuantizer& quantizer, const at::Tensor& weight) {
  const at::Tensor raw = quantizer->raw(weight);
  const at::Tensor bits = count_set_bits(raw);
  MultiplierReport r;
  r.weights = raw.numel();
  r.nonzero_weights = raw.ne(0).sum().item<int64_t>();
  r.max_set_bits = raw.numel() ? bits.max().item<int64_t>() : 0;
  if (quantizer->options.k_hot().value_or(0) > 0) {
    r.shift_adds = bits.sum().item<int64_t>();
  } else {
    r.multipliers = r.nonzero_weights;
  }
  return r;
}

}  // namespace

MultiplierReport multiplier_report(const nn::Module& layer) {
  if (auto* l = dynamic_cast<const QfxLinearImpl*>(&layer)) {
    return report_weights(l->quantizers.weight, l->weight);
  }
  if (auto* c = dynamic_cast<const QfxConv2dImpl*>(&layer)) {
    return report_weights(c->quantizers.weight, c->weight);
  }
  if (auto* b = dynamic_cast<const QfxBatchNorm2dImpl*>(&layer)) {
    return report_weights(b->quantizers.weight, b->folded().first);
  }
  MultiplierReport total;
  for (const auto& child : layer.children()) total += multiplier_report(*child);
  return total;
}

}  // namespace strata::quant
