#include "strata/moe/moe_lm.h"

#include <torch/torch.h>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/json_fields.h"

namespace strata::moe {

MoEDecoderBlockImpl::MoEDecoderBlockImpl(const core::DecoderBlock& dense,
                                         const MoELayerOptions& moe_options)
    : dropout(dense->options.dropout()) {
  STRATA_CHECK(moe_options.d_model() == dense->options.d_model(), "MoE block: experts of d_model ",
               moe_options.d_model(), ", expected the block's ", dense->options.d_model());
  norm1 = register_module("norm1", dense->norm1);
  attn = register_module("attn", dense->attn);
  norm2 = register_module("norm2", dense->norm2);
  moe = register_module("moe", MoELayer(moe_options));
}

at::Tensor MoEDecoderBlockImpl::forward(const at::Tensor& x) {
  return core::pre_norm_residuals(
      x, norm1, attn, norm2, [this](const at::Tensor& h) { return moe(h); }, dropout,
      is_training());
}

torch::nn::Sequential make_moe_transformer_lm(const core::TransformerLMOptions& lm,
                                              const MoELayerOptions& moe) {
  moe.validate();
  // fortunes-lm built and initialized as usual; each block's dense FFN then gives way to
  // an MoE layer (initialized by MoELayer, in block order).
  torch::nn::Sequential dense = core::make_transformer_lm(lm);
  torch::nn::Sequential model;
  const std::vector<std::string> names = dense->named_children().keys();
  size_t i = 0;
  for (const torch::nn::AnyModule& element : *dense) {
    std::string name = names[i++];
    if (const auto block = std::dynamic_pointer_cast<core::DecoderBlockImpl>(element.ptr())) {
      model->push_back(std::move(name), MoEDecoderBlock(core::DecoderBlock(block), moe));
    } else {
      model->push_back(std::move(name),
                       element);  // the same module (the head keeps its tied table)
    }
  }
  return model;
}

std::vector<MoELayerImpl*> moe_layers(torch::nn::Module& model) {
  std::vector<MoELayerImpl*> layers;
  for (const auto& [name, layer] : named_moe_layers(model)) layers.push_back(layer);
  return layers;
}

std::vector<std::pair<std::string, MoELayerImpl*>> named_moe_layers(torch::nn::Module& model) {
  std::vector<std::pair<std::string, MoELayerImpl*>> layers;
  for (const auto& item : model.named_modules()) {
    if (auto* layer = item.value()->as<MoELayerImpl>()) layers.emplace_back(item.key(), layer);
  }
  return layers;
}

nlohmann::json moe_lm_description(const MoELayerOptions& moe) {
  return {{"model", "fortunes-lm-moe"},
          {"experts", moe.experts()},
          {"top_k", moe.top_k()},
          {"expert_ffn", moe.hidden()}};
}

nlohmann::json moe_routing_description(const MoELayerOptions& moe) {
  return {{"capacity_factor", moe.capacity_factor()},
          {"drop_priority", to_string(moe.drop_priority())}};
}

MoELayerOptions moe_layer_options_from_json(const nlohmann::json& j, int64_t d_model) {
  STRATA_CHECK(j.is_object() && j.value("model", "") == "fortunes-lm-moe",
               "not a fortunes-lm-moe description (expected \"model\": \"fortunes-lm-moe\")");
  const core::JsonField fields(j, "fortunes-lm-moe description");
  const auto get = [&](const char* key) { return fields[key].integer(0); };
  MoELayerOptions options(d_model, get("experts"), get("expert_ffn"));
  options.top_k(get("top_k"));
  // Without "moe_routing" (checkpoints written before it was recorded): the defaults.
  if (fields.has("moe_routing")) {
    const core::JsonField routing = fields["moe_routing"].object();
    if (routing.has("capacity_factor"))
      options.capacity_factor(routing["capacity_factor"].number(0.0));
    if (routing.has("drop_priority"))
      options.drop_priority(drop_priority_from_string(routing["drop_priority"].string()));
  }
  options.validate();
  return options;
}

LoadedMoETransformerLM load_moe_transformer_lm(const std::string& checkpoint) {
  const core::CheckpointReader reader(checkpoint);
  LoadedMoETransformerLM loaded;
  try {
    const nlohmann::json& description = reader.extra();
    STRATA_CHECK(
        description.is_object() && description.value("model", "") == "fortunes-lm-moe",
        "not a fortunes-lm-moe checkpoint (its extra has no \"model\": \"fortunes-lm-moe\")");
    nlohmann::json dense = description;
    dense["model"] = "fortunes-lm";  // the rest of the description is fortunes-lm's
    loaded.options = core::transformer_lm_from_json(dense);
    loaded.moe = moe_layer_options_from_json(description, loaded.options.d_model());
  } catch (const Error& e) {
    STRATA_FAIL("checkpoint ", checkpoint, ": ", e.what());
  }
  loaded.model = make_moe_transformer_lm(loaded.options, loaded.moe);
  loaded.step = core::load_checkpoint(checkpoint, *loaded.model, nullptr, &loaded.extra);
  return loaded;
}

}  // namespace strata::moe
