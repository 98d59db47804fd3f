// export_qfx: a quantized Sequential as JSON, for an HLS design or an integer-only
// re-implementation (tests/quant/test_qfx_export.cpp runs one).
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qfx_detail.h"
#include "strata/core/error.h"
#include "strata/quant/qfx.h"

namespace strata::quant {
namespace nn = torch::nn;
using nlohmann::ordered_json;

namespace {

std::vector<int64_t> ints(const at::Tensor& raw) {
  const at::Tensor c = raw.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

template <size_t D>
std::vector<int64_t> array(const torch::ExpandingArray<D>& a) {
  return {a->begin(), a->end()};
}

std::string type_of(const FixedPointQuantizer& q, const std::string& layer, const char* which) {
  STRATA_CHECK(q->calibrated(), "export_qfx: layer ", layer, ": the ", which,
               " quantizer is not calibrated (run a forward pass or calibrate_ptq first)");
  return to_string(q->type());
}

// The fields every multiply-accumulate layer has: types, integer weights and bias.
void add_mac_fields(ordered_json& j, const QfxQuantizers& q, const at::Tensor& weight,
                    const at::Tensor& bias, const FixedPointType& accumulator,
                    const std::string& layer) {
  j["input_type"] = type_of(q.input, layer, "input");
  j["weight_type"] = type_of(q.weight, layer, "weight");
  j["output_type"] = type_of(q.output, layer, "output");
  j["accumulator_type"] = to_string(accumulator);
  j["bias_type"] = to_string(detail::bias_type(accumulator));
  j["k_hot"] = q.weight->options.k_hot().value_or(0);
  j["weight_shape"] = weight.sizes().vec();
  j["weight"] = ints(q.weight->raw(weight));
  j["bias"] = bias.defined()
                  ? ints(fixed_point_cast_raw(bias.detach(), detail::bias_type(accumulator)))
                  : std::vector<int64_t>{};
}

ordered_json conv_json(const QfxConv2dImpl& conv, const std::string& layer) {
  const auto& c = conv.options.conv();
  std::vector<int64_t> padding;
  if (const auto* p = c10::get_if<torch::ExpandingArray<2>>(&c.padding())) {
    padding = array(*p);
  } else {
    STRATA_CHECK(c10::holds_alternative<torch::enumtype::kValid>(c.padding()), "export_qfx: layer ",
                 layer, ": padding 'same' is not exported; give the padding in numbers");
    padding = {0, 0};
  }
  ordered_json j = {{"kind", "conv2d"},
                    {"in_channels", c.in_channels()},
                    {"out_channels", c.out_channels()},
                    {"kernel_size", array(c.kernel_size())},
                    {"stride", array(c.stride())},
                    {"padding", padding},
                    {"dilation", array(c.dilation())},
                    {"groups", c.groups()}};
  type_of(conv.quantizers.input, layer, "input");
  type_of(conv.quantizers.weight, layer, "weight");
  add_mac_fields(j, conv.quantizers, conv.weight, conv.bias, conv.accumulator_type(), layer);
  return j;
}

ordered_json linear_json(const QfxLinearImpl& linear, const std::string& layer) {
  ordered_json j = {{"kind", "linear"},
                    {"in_features", linear.options.in_features()},
                    {"out_features", linear.options.out_features()}};
  type_of(linear.quantizers.input, layer, "input");
  type_of(linear.quantizers.weight, layer, "weight");
  add_mac_fields(j, linear.quantizers, linear.weight, linear.bias, linear.accumulator_type(),
                 layer);
  return j;
}

ordered_json batch_norm_json(const QfxBatchNorm2dImpl& bn, const std::string& layer) {
  ordered_json j = {{"kind", "batchnorm2d"}, {"num_features", bn.options.num_features()}};
  type_of(bn.quantizers.input, layer, "input");
  type_of(bn.quantizers.weight, layer, "scale");
  const auto [scale, shift] = bn.folded();
  // "weight" is the folded per-channel scale, "bias" the folded shift.
  add_mac_fields(j, bn.quantizers, scale.detach(), shift.detach(), bn.accumulator_type(), layer);
  return j;
}

void add_layers(const nn::SequentialImpl& model, ordered_json& layers) {
  for (size_t i = 0; i < model.size(); ++i) {
    const std::string name = std::to_string(i);
    const std::shared_ptr<nn::Module> m = model.ptr(i);
    ordered_json j;
    if (auto* conv = dynamic_cast<const QfxConv2dImpl*>(m.get())) {
      j = conv_json(*conv, name);
    } else if (auto* linear = dynamic_cast<const QfxLinearImpl*>(m.get())) {
      j = linear_json(*linear, name);
    } else if (auto* bn = dynamic_cast<const QfxBatchNorm2dImpl*>(m.get())) {
      j = batch_norm_json(*bn, name);
    } else if (dynamic_cast<const nn::ReLUImpl*>(m.get())) {
      j = {{"kind", "relu"}};
    } else if (auto* pool = dynamic_cast<const nn::MaxPool2dImpl*>(m.get())) {
      const auto& p = pool->options;
      j = {{"kind", "maxpool2d"},
           {"kernel_size", array(p.kernel_size())},
           {"stride", array(p.stride())},
           {"padding", array(p.padding())},
           {"dilation", array(p.dilation())},
           {"ceil_mode", p.ceil_mode()}};
    } else if (auto* flatten = dynamic_cast<const nn::FlattenImpl*>(m.get())) {
      j = {{"kind", "flatten"},
           {"start_dim", flatten->options.start_dim()},
           {"end_dim", flatten->options.end_dim()}};
    } else if (dynamic_cast<const nn::DropoutImpl*>(m.get()) ||
               dynamic_cast<const nn::IdentityImpl*>(m.get())) {
      j = {{"kind", "identity"}};
    } else {
      STRATA_FAIL("export_qfx: layer ", name, " (", detail::layer_name(*m),
                  ") cannot be exported; quantize the model with quantize_model first");
    }
    j["name"] = name;
    layers.push_back(std::move(j));
  }
}

}  // namespace

void export_qfx(const nn::Sequential& model, const std::string& path) {
  STRATA_CHECK(!model.is_empty(), "export_qfx: empty model holder");
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  STRATA_CHECK(std::filesystem::is_directory(dir), "export_qfx ", path, ": directory ",
               dir.string(), " does not exist");
  // Everything that can fail on the model fails here, before a file is created.
  ordered_json layers = ordered_json::array();
  add_layers(*model, layers);
  // One layer per line: small (weights are long arrays) and still readable with grep.
  std::string text = R"({"format": "strata-qfx", "version": 1, "layers": [)"
                     "\n";
  for (size_t i = 0; i < layers.size(); ++i) {
    text += layers[i].dump() + (i + 1 < layers.size() ? ",\n" : "\n");
  }
  text += "]}\n";

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    STRATA_CHECK(out.is_open(), "export_qfx ", path, ": cannot create ", tmp, " (",
                 std::strerror(errno), ")");
    out << text;
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      STRATA_FAIL("export_qfx ", path, ": write failed (", std::strerror(errno), ")");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(tmp.c_str());
    STRATA_FAIL("export_qfx ", path, ": cannot rename ", tmp, " to it (", std::strerror(error),
                ")");
  }
}

}  // namespace strata::quant
