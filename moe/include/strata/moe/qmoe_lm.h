#pragma once
// QMoE on a whole fortunes-lm-moe (moe_lm.h): calibration from the tokens its routers send
// to each expert while it reads text, and the model run with its experts compressed.
//
//   LoadedMoETransformerLM lm = load_moe_transformer_lm(checkpoint);
//   RoutedTokenRecorder recorder(...);
//   record_routed_tokens(lm.model, corpus, 256, lm.options.context(), 0, recorder);
//   ... compress_expert_stack(stack, recorder.calibration()) per layer, write_qmoe ...
//   LoadedMoETransformerLM small = load_compressed_moe_lm(checkpoint, "model.qmoe");
//   torch::NoGradGuard no_grad;
//   at::Tensor logits = small.model->forward(tokens);

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>

#include "strata/core/data/text_corpus.h"
#include "strata/moe/moe_lm.h"
#include "strata/moe/qmoe_compress.h"
#include "strata/moe/qmoe_file.h"

namespace strata::moe {

// Runs `sequences` windows of `context` bytes of the corpus's train split (drawn with a
// generator seeded by `seed`, in batches of at most 16) through `model` in eval mode
// without gradients, every MoE layer's token observer feeding `recorder` under the
// layer's name (e.g. "block0.moe", the prefix of its expert stacks in a checkpoint) with
// the tokens as its experts receive them. The observers are removed and the model's mode
// restored afterwards, also on an error.
void record_routed_tokens(torch::nn::Sequential& model, const core::TextCorpus& corpus,
                          int64_t sequences, int64_t context, uint64_t seed,
                          RoutedTokenRecorder& recorder);

// Puts every layer of `compressed` into the MoE layer of the same name in `model`
// (MoELayerImpl::set_compressed_experts). The layers must match exactly: the same names,
// expert counts and shapes; otherwise one strata::Error that names `what` (the file) and
// the first difference, and `model` is left unchanged.
void use_compressed_experts(torch::nn::Module& model, const QmoeModel& compressed,
                            const std::string& what, const CompressedLinearOptions& options = {});

// fortunes-lm-moe from `checkpoint` (all but the experts' weights) and `qmoe_file` (the
// experts, compressed), in eval mode: an inference-only model whose experts run from the
// code stream. strata::Error when the file's layers do not match the checkpoint's.
LoadedMoETransformerLM load_compressed_moe_lm(const std::string& checkpoint,
                                              const std::string& qmoe_file,
                                              const CompressedLinearOptions& options = {});

}  // namespace strata::moe
