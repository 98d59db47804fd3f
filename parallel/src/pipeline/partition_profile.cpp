// profile_layers: what each layer of a Sequential costs, measured on a sample micro-batch.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "strata/core/error.h"
#include "strata/parallel/pipeline/partition.h"

#include "executor_internal.h"

namespace strata::parallel {
namespace {

int64_t bytes_of(const at::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

// "torch::nn::LinearImpl" -> "Linear": the name users know the layer by.
std::string short_type(const std::string& name) {
  std::string type = name.substr(name.rfind(':') == std::string::npos ? 0 : name.rfind(':') + 1);
  const std::string impl = "Impl";
  if (type.size() > impl.size() && type.compare(type.size() - impl.size(), impl.size(), impl) == 0)
    type.resize(type.size() - impl.size());
  return type;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// Profiling runs backward, which accumulates into .grad; the caller's gradients (perhaps
// mid-accumulation) must come out as they went in.
class GradientGuard {
 public:
  explicit GradientGuard(torch::nn::Module& module) : parameters_(module.parameters()) {
    for (auto& p : parameters_)
      saved_.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  }
  ~GradientGuard() {
    for (size_t i = 0; i < parameters_.size(); ++i) parameters_[i].mutable_grad() = saved_[i];
  }
  GradientGuard(const GradientGuard&) = delete;
  GradientGuard& operator=(const GradientGuard&) = delete;

 private:
  std::vector<at::Tensor> parameters_, saved_;
};

}  // namespace

std::vector<LayerProfile> profile_layers(torch::nn::Sequential& model,
                                         const at::Tensor& sample_micro_batch, int repeats) {
  STRATA_CHECK(!model->is_empty(),
               "cannot profile an empty model: got 0 layers, expected at least 1");
  STRATA_CHECK(repeats >= 1, "profile repeats: got ", repeats, ", expected at least 1");
  STRATA_CHECK(sample_micro_batch.defined(), "profile sample micro-batch: got an undefined tensor");
  GradientGuard guard(*model);
  torch::AutoGradMode grad_on(true);

  const auto children = model->named_children();
  std::vector<LayerProfile> profiles;
  // One tensor, or the several a layer passes on (stage_io.h).
  pipeline_detail::StageValue input{{sample_micro_batch.detach()}, false};
  size_t index = 0;
  for (auto& layer : *model) {
    LayerProfile p;
    p.name = children[index].key();
    p.type = short_type(layer.ptr()->name());
    for (const auto& w : layer.ptr()->parameters()) {
      p.parameters += w.numel();
      p.parameter_bytes += bytes_of(w);
    }
    pipeline_detail::StageValue x, output;
    std::vector<double> times;
    for (int r = 0; r <= repeats; ++r) {  // r == 0 warms up (allocations, kernel choice)
      // A fresh non-leaf copy each time: an in-place layer (ReLU(inplace)) may overwrite
      // it, which autograd refuses on a leaf and which would change the next repeat's input.
      // Its backward passes the gradient through without work. Later layers' inputs need a
      // gradient, as inside a pipeline where every stage but the first sends one back;
      // integer inputs (token ids, masks) cannot have one.
      x = {{}, input.list};
      for (const at::Tensor& t : input.tensors)
        x.tensors.push_back(
            t.detach().requires_grad_(index > 0 && pipeline_detail::carries_gradient(t)).clone());
      const auto start = std::chrono::steady_clock::now();
      output = pipeline_detail::forward_layer(layer, x, static_cast<int>(index));
      std::vector<at::Tensor> roots, seeds;
      for (const at::Tensor& t : output.tensors)
        if (t.requires_grad()) {
          roots.push_back(t);
          seeds.push_back(at::ones_like(t));
        }
      if (!roots.empty()) torch::autograd::backward(roots, seeds);
      const auto stop = std::chrono::steady_clock::now();
      if (r > 0) times.push_back(std::chrono::duration<double>(stop - start).count());
    }
    p.time = median(times);
    // A view (Flatten, reshape) or an in-place result shares its input's storage and keeps
    // nothing new alive.
    for (const at::Tensor& out : output.tensors)
      if (std::none_of(x.tensors.begin(), x.tensors.end(),
                       [&](const at::Tensor& in) { return out.is_alias_of(in); }))
        p.activation_bytes += bytes_of(out);
    if (p.parameters > 0)
      for (const at::Tensor& in : x.tensors) p.activation_bytes += bytes_of(in);
    profiles.push_back(std::move(p));

    input = {{}, output.list};
    for (const at::Tensor& t : output.tensors) input.tensors.push_back(t.detach());
    ++index;
  }
  return profiles;
}

}  // namespace strata::parallel
