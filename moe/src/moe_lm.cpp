#include "strata/moe/moe_lm.h"

#include <torch/torch.h>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"

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

MoELayerOptions MoEFlags::layer_options(int64_t d_model,
                                        parallel::CommunicatorPtr expert_group) const {
  return MoELayerOptions(d_model, experts, expert_ffn)
      .top_k(top_k)
      .capacity_factor(capacity_factor)
      .drop_priority(drop_priority_from_string(drop_priority))
      .balance_loss_coef(balance_loss)
      .z_loss_coef(z_loss)
      .jitter(jitter)
      .expert_group(std::move(expert_group));
}

nlohmann::json MoEFlags::description() const {
  return {{"model", "fortunes-lm-moe"},
          {"experts", experts},
          {"top_k", top_k},
          {"expert_ffn", expert_ffn}};
}

nlohmann::json MoEFlags::routing_description() const {
  return {{"capacity_factor", capacity_factor}, {"drop_priority", drop_priority}};
}

MoELayerOptions moe_layer_options_from_json(const nlohmann::json& j, int64_t d_model) {
  STRATA_CHECK(j.is_object() && j.value("model", "") == "fortunes-lm-moe",
               "not a fortunes-lm-moe description (expected \"model\": \"fortunes-lm-moe\")");
  const auto get = [&](const char* key) {
    STRATA_CHECK(j.contains(key) && j[key].is_number_integer(), "fortunes-lm-moe description: \"",
                 key, "\" missing or not an integer");
    return j[key].get<int64_t>();
  };
  MoEFlags f;
  f.experts = get("experts");
  f.top_k = get("top_k");
  f.expert_ffn = get("expert_ffn");
  // Without "moe_routing" (checkpoints written before it was recorded): the defaults.
  const nlohmann::json routing = j.value("moe_routing", nlohmann::json::object());
  if (routing.contains("capacity_factor")) {
    STRATA_CHECK(routing["capacity_factor"].is_number(),
                 "fortunes-lm-moe description: \"moe_routing.capacity_factor\" is not a number");
    f.capacity_factor = routing["capacity_factor"].get<double>();
  }
  if (routing.contains("drop_priority")) {
    STRATA_CHECK(routing["drop_priority"].is_string(),
                 "fortunes-lm-moe description: \"moe_routing.drop_priority\" is not a string");
    f.drop_priority = routing["drop_priority"].get<std::string>();
  }
  MoELayerOptions options = f.layer_options(d_model, nullptr);
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

namespace {
const char* const kMoEOnlyFlags[] = {"--experts",         "--top-k",         "--expert-ffn",
                                     "--capacity-factor", "--drop-priority", "--balance-loss",
                                     "--z-loss",          "--router-jitter", "--ep"};
}  // namespace

void add_moe_flags(CLI::App& app, MoEFlags& f) {
  app.add_flag("--moe", f.enabled,
               "fortunes-lm-moe: every FFN becomes a mixture of experts (see --experts)");
  app.add_option("--experts", f.experts, "Experts per MoE layer")->check(CLI::PositiveNumber);
  app.add_option("--top-k", f.top_k, "Experts per token")->check(CLI::PositiveNumber);
  app.add_option("--expert-ffn", f.expert_ffn, "Hidden width of each expert")
      ->check(CLI::PositiveNumber);
  app.add_option("--capacity-factor", f.capacity_factor,
                 "Expert capacity = ceil(top-k * tokens / experts * factor); 0: dropless")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--drop-priority", f.drop_priority, "Which tokens a full expert keeps")
      ->check(CLI::IsMember({"order", "score"}));
  app.add_option("--balance-loss", f.balance_loss, "Coefficient of the load-balancing loss")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--z-loss", f.z_loss, "Coefficient of the router z-loss")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--router-jitter", f.jitter, "Multiplicative router input noise in training")
      ->check(CLI::Range(0.0, 0.99));
  app.add_option("--ep", f.ep,
                 "Expert-parallel size: ranks that share out each layer's experts (divides "
                 "the data-parallel size)")
      ->check(CLI::PositiveNumber);
}

void check_moe_flags(const CLI::App& app, const MoEFlags& f) {
  if (!f.enabled) {
    for (const char* flag : kMoEOnlyFlags) STRATA_CHECK(app.count(flag) == 0, flag, " needs --moe");
    return;
  }
  STRATA_CHECK(f.top_k <= f.experts, "--top-k ", f.top_k, " is above --experts ", f.experts);
  STRATA_CHECK(f.experts % f.ep == 0, "--experts ", f.experts, " is not divisible by --ep ", f.ep);
}

}  // namespace strata::moe
